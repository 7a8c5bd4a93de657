#if canImport(Glibc)
import Glibc
#endif

/// Keeps the calling thread off given CPUs for a while.
///
/// The OOM engine is woken by the very allocation that ran memory short,
/// often on the allocating task's CPU, where the scheduler likes to place the
/// wakee. Reaping the killed victim there would make the victim's own exit
/// and the reap take turns on one CPU while another sits idle.
public enum CPUPlacement {
    /// Runs `body` on a CPU outside `cpus` if the calling thread is on one of
    /// them and may run elsewhere; restores the thread's affinity afterwards.
    /// Without the means to tell (no sched_getcpu), just runs `body`.
    public static func awayFrom<T>(_ cpus: Set<Int32>, _ body: () throws -> T) rethrows -> T {
        guard let functions = Functions.shared else { return try body() }
        let current = functions.getCPU()
        var saved = cpu_set_t()
        let size = MemoryLayout<cpu_set_t>.size
        guard current >= 0, cpus.contains(current), functions.getAffinity(0, size, &saved) == 0 else { return try body() }
        var others = saved
        let anyLeft = withUnsafeMutableBytes(of: &others) { bytes -> Bool in
            let words = bytes.bindMemory(to: UInt.self)
            let bitsPerWord = Int32(UInt.bitWidth)
            for cpu in cpus where cpu >= 0 && Int(cpu / bitsPerWord) < words.count {
                words[Int(cpu / bitsPerWord)] &= ~(UInt(1) << UInt(cpu % bitsPerWord))
            }
            return words.contains { $0 != 0 }
        }
        guard anyLeft, functions.setAffinity(0, size, &others) == 0 else { return try body() }
        defer { _ = functions.setAffinity(0, size, &saved) }
        return try body()
    }

    /// The CPU the calling thread runs on, or -1.
    public static var currentCPU: Int32 { Functions.shared?.getCPU() ?? -1 }

    /// glibc's GNU scheduling calls, which Swift's Glibc module leaves out
    /// (they need _GNU_SOURCE); looked up once.
    private struct Functions: @unchecked Sendable {
        typealias GetCPU = @convention(c) () -> Int32
        typealias Affinity = @convention(c) (Int32, Int, UnsafeMutablePointer<cpu_set_t>) -> Int32
        let getCPU: GetCPU
        let getAffinity: Affinity
        let setAffinity: Affinity

        static let shared: Functions? = {
            guard let getCPU = dlsym(nil, "sched_getcpu"), let get = dlsym(nil, "sched_getaffinity"),
                  let set = dlsym(nil, "sched_setaffinity") else { return nil }
            return Functions(getCPU: unsafeBitCast(getCPU, to: GetCPU.self), getAffinity: unsafeBitCast(get, to: Affinity.self),
                             setAffinity: unsafeBitCast(set, to: Affinity.self))
        }()
    }
}
