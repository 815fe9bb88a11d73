#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// An exclusive advisory lock on a file (`flock`), held while `body` runs, so that processes
/// opening the same registry take turns.
enum FileLock {
    static func withExclusiveLock<Result>(path: String, _ body: () throws -> Result) throws -> Result {
        let descriptor = open(path, O_CREAT | O_RDWR | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else {
            throw TenancyError(code: .registryFailed, message: "cannot open the registry lock file \(path) (errno \(errno)); check the directory's permissions")
        }
        defer { close(descriptor) }
        while flock(descriptor, LOCK_EX) != 0 {
            guard errno == EINTR else {
                throw TenancyError(code: .registryFailed, message: "cannot lock the registry lock file \(path) (errno \(errno))")
            }
        }
        defer { flock(descriptor, LOCK_UN) }
        return try body()
    }
}
