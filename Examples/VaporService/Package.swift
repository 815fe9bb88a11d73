// swift-tools-version:6.1
import Foundation
import PackageDescription

// Tenancy is the repository this example sits in; SwiftPM names a path dependency after its folder.
let tenancy = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
let tenancyPackage = tenancy.lastPathComponent.lowercased()

let package = Package(
    name: "vapor-service",
    platforms: [
        .macOS(.v14)
    ],
    products: [
        .executable(name: "vapor-tenant-service", targets: ["vapor-tenant-service"])
    ],
    dependencies: [
        .package(path: tenancy.path),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.0"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
        .package(url: "https://github.com/vapor/vapor.git", from: "4.122.3"),
    ],
    targets: [
        .target(
            name: "VaporTenantService",
            dependencies: [
                .product(name: "Logging", package: "swift-log"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "SchemaDB", package: tenancyPackage),
                .product(name: "Tenancy", package: tenancyPackage),
                .product(name: "Vapor", package: "vapor"),
            ]
        ),
        .executableTarget(
            name: "vapor-tenant-service",
            dependencies: [
                "VaporTenantService",
                .product(name: "SchemaDB", package: tenancyPackage),
                .product(name: "Tenancy", package: tenancyPackage),
                .product(name: "Vapor", package: "vapor"),
            ]
        ),
        .testTarget(
            name: "VaporTenantServiceTests",
            dependencies: [
                "VaporTenantService",
                .product(name: "SchemaDB", package: tenancyPackage),
                .product(name: "SchemaDBTesting", package: tenancyPackage),
                .product(name: "Tenancy", package: tenancyPackage),
                .product(name: "VaporTesting", package: "vapor"),
            ]
        ),
    ]
)

for target in package.targets {
    target.swiftSettings = (target.swiftSettings ?? []) + [
        .enableUpcomingFeature("ExistentialAny"),
        .enableUpcomingFeature("InternalImportsByDefault"),
        .enableUpcomingFeature("MemberImportVisibility"),
    ]
}
