import Foundation
import Hummingbird
import Logging
import TenantService

var logger = Logger(label: "tenant-service")
logger.logLevel = ProcessInfo.processInfo.environment["LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? .info
do {
    let settings = try ServiceSettings.fromEnvironment()
    let app = try ServiceApplication.make(settings: settings, logger: logger)
    try await app.runService()
} catch {
    logger.critical("tenant-service cannot start: \(error)")
    exit(1)
}
