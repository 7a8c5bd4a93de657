// `mmpolicy-workload faults`: page faults as fast as a process can take them,
// for measuring what per-fault work (BPF sensors) costs.
import ArgumentParser
import Glibc

struct Faults: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "faults",
        abstract: "First-touch SIZE bytes page by page, give them back (MADV_DONTNEED), --passes times; print the time.",
        discussion: """
            One anonymous private mapping of SIZE bytes without transparent huge pages, split \
            into --threads equal slices, one thread each. A pass writes one word into every \
            page of the thread's slice (one first-touch fault per 4 KiB page: a zeroed page \
            allocated and mapped) and then gives the slice back with madvise(MADV_DONTNEED). \
            It prints "ready <pid>", then --runs times: waits for SIGUSR1 (so that it can be \
            set up from outside first; --now: the first run does not wait), runs --passes \
            passes on every thread and prints "done <wall ns> <cpu ns> <faults>" (from the \
            signal to the last thread's end: CLOCK_MONOTONIC, and the process's CPU time, user \
            and system; pages written). Then it exits.
            """)

    @Option(help: ArgumentHelp("Memory faulted in and given back per pass, all threads together.", valueName: "size"))
    var size: Size

    @Option(help: "Passes over the memory per run.")
    var passes = 4

    @Option(help: "Runs, each started by a SIGUSR1.")
    var runs = 1

    @Option(help: "Threads, each with its own slice.")
    var threads = 1

    @Flag(help: "Start at once instead of waiting for SIGUSR1.")
    var now = false

    @OptionGroup var setup: Setup

    func validate() throws {
        guard passes > 0, runs > 0, (1...64).contains(threads) else { throw ValidationError("--passes and --runs must be > 0, --threads in 1...64") }
        guard size.bytes >= threads * Memory.pageSize else { throw ValidationError("--size must give each thread a page at least") }
    }

    func run() throws {
        var signals = sigset_t()
        sigemptyset(&signals)
        sigaddset(&signals, SIGUSR1)
        pthread_sigmask(SIG_BLOCK, &signals, nil)
        try setup.apply()
        let slice = size.bytes / threads / Memory.pageSize * Memory.pageSize
        let mapping = try AlignedMapping(bytes: slice * threads)
        announce("ready \(getpid())")
        let passes = self.passes
        for run in 0..<runs {
            if run > 0 || !now { while sigwaitinfo(&signals, nil) != SIGUSR1 {} }
            let start = monotonicSeconds(), cpuStart = processCPUSeconds()
            let workers = try (0..<threads).map { index in
                try Worker { mapping.faultLoop(offset: index * slice, bytes: slice, passes: passes) }
            }
            for worker in workers { worker.join() }
            let elapsed = monotonicSeconds() - start, cpu = processCPUSeconds() - cpuStart
            announce("done \(Int64(elapsed * 1e9)) \(Int64(cpu * 1e9)) \(slice / Memory.pageSize * threads * passes)")
        }
    }

    /// CPU time of the whole process, user and system (CLOCK_PROCESS_CPUTIME_ID).
    private func processCPUSeconds() -> Double {
        var now = timespec()
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now)
        return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
    }
}

extension AlignedMapping {
    /// First-touches every page of [offset, offset + bytes) and gives them
    /// back, `passes` times.
    func faultLoop(offset: Int, bytes: Int, passes: Int) {
        guard let start else { return }
        let base = start + offset
        for pass in 0..<passes {
            for page in stride(from: 0, to: bytes, by: Memory.pageSize) {
                base.storeBytes(of: UInt64(page) | UInt64(pass) << 40 | 1, toByteOffset: page, as: UInt64.self)
            }
            madvise(base, bytes, MADV_DONTNEED)
        }
    }
}

/// One POSIX thread running `body`; `join()` waits for it.
final class Worker {
    private final class Box {
        let body: () -> Void
        init(_ body: @escaping () -> Void) { self.body = body }
    }
    private var thread = pthread_t()

    init(_ body: @escaping () -> Void) throws {
        let box = Unmanaged.passRetained(Box(body))
        let rc = pthread_create(&thread, nil, { context in
            Unmanaged<Box>.fromOpaque(context!).takeRetainedValue().body()
            return nil
        }, box.toOpaque())
        guard rc == 0 else {
            box.release()
            throw Failure("pthread_create: \(String(cString: strerror(rc)))")
        }
    }

    func join() { pthread_join(thread, nil) }
}
