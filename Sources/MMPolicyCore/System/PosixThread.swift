import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// A POSIX thread for work that must not run on Swift concurrency's small
/// cooperative pool: blocking poll() loops (the OOM engine, the control
/// socket's accept loop and connections).
public enum PosixThread {
    /// Starts `body` on a new thread named `name` (as `ps -L` shows it; at
    /// most 15 bytes): joinable (the caller must join it) unless `detached`.
    public static func start(name: String? = nil, detached: Bool = false,
                             _ body: @escaping @Sendable () -> Void) -> Result<pthread_t, Errno> {
        final class Box: Sendable {
            let body: @Sendable () -> Void
            init(_ body: @escaping @Sendable () -> Void) { self.body = body }
        }
        let named: @Sendable () -> Void = {
            // glibc's pthread_setname_np is not imported into Swift; this is what it does.
            if let name {
                let fd = open("/proc/thread-self/comm", O_WRONLY | O_CLOEXEC)
                if fd >= 0 {
                    let text = Array(name.utf8.prefix(15))
                    _ = text.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
                    close(fd)
                }
            }
            body()
        }
        let box = Unmanaged.passRetained(Box(named))
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        if detached { pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED)) }
        var thread = pthread_t()
        let rc = pthread_create(&thread, &attributes, { argument in
            let box = Unmanaged<Box>.fromOpaque(argument!).takeRetainedValue()
            box.body()
            return nil
        }, box.toOpaque())
        guard rc == 0 else {
            box.release()
            return .failure(Errno(rawValue: rc))
        }
        return .success(thread)
    }
}
