// mmpolicy-workload: memory workloads for live-kernel tests and benchmarks.
//
//   mmpolicy-workload hold --rss 64M [--cgroup DIR] [--oom-score-adj N]
//   mmpolicy-workload grow --rate 50M [--max 1G] [--initial 16M] [--cgroup DIR] [--oom-score-adj N]
//   mmpolicy-workload idle --count 20 [--rss 256K] [--cgroup DIR] [--oom-score-adj N]
//   mmpolicy-workload thrash --rss 128M [--cgroup DIR] [--oom-score-adj N]
//   mmpolicy-workload hotcold --hot 16M --cold 48M [--interval-ms 10] [--untouched] [--cgroup DIR] [--oom-score-adj N]
//   mmpolicy-workload faults --size 256M [--passes 4] [--runs 1] [--threads 1] [--now] [--cgroup DIR] [--oom-score-adj N]
//   mmpolicy-workload tierload --hot 64M --cold 192M [--incompressible 64M] [--report-ms 1000] [--duty-percent 100] [--seed N] [--cgroup DIR] [--oom-score-adj N]
//
// Every workload first joins --cgroup and sets --oom-score-adj, so the memory
// it then allocates is charged there. Once its memory is resident it prints one
// line on stdout, "ready <pid>" (idle: "ready"; hotcold adds where its memory
// is), and then runs until killed.
// Memory is anonymous, private and touched one page (4 KiB) at a time with a
// distinct non-zero value, so it is really resident (no zero page) and KSM
// finds nothing to merge. SIZE is bytes with an optional K, M or G suffix
// (binary units): 4096, 512K, 64M, 1G.
//
// Linux only. Bad input exits non-zero with a one-line error on stderr.

import ArgumentParser
import Glibc

// Top-level code rather than @main: the target has more than one file (a
// module with @main cannot have a main.swift), and this is its entry point.
Workload.main()

struct Workload: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mmpolicy-workload",
        abstract: "Memory workloads for mmpolicy's live-kernel tests and benchmarks.",
        subcommands: [Hold.self, Grow.self, Idle.self, Thrash.self, HotCold.self, Faults.self, TierLoad.self]
    )

    /// ParsableCommand.main(), except that an error is one line, without the usage.
    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            let code = exitCode(for: error)
            if code == .success { exit(withError: error) }  // --help
            printError("mmpolicy-workload: \(message(for: error))")
            Glibc.exit(code.rawValue)
        }
    }
}

// MARK: - Subcommands

struct Hold: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make SIZE bytes resident, print 'ready <pid>', sleep until killed.")

    @Option(help: ArgumentHelp("Resident memory to hold.", valueName: "size"))
    var rss: Size

    @OptionGroup var setup: Setup

    func run() throws {
        try setup.apply()
        var memory = Memory()
        try memory.grow(by: rss.bytes)
        announce("ready \(getpid())")
        sleepForever()
    }
}

struct Grow: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make --initial resident, print 'ready <pid>', then grow at --rate up to --max and hold.")

    @Option(help: ArgumentHelp("Growth per second, in steps every 10 ms.", valueName: "size"))
    var rate: Size

    @Option(help: ArgumentHelp("Stop growing at this total (default: never).", valueName: "size"))
    var max: Size?

    @Option(help: ArgumentHelp("Resident memory before 'ready'.", valueName: "size"))
    var initial = Size(bytes: 0)

    @OptionGroup var setup: Setup

    func validate() throws {
        guard rate.bytes > 0 else { throw ValidationError("--rate must be more than 0") }
        if let max, initial.bytes > max.bytes {
            throw ValidationError("--initial (\(initial)) is more than --max (\(max))")
        }
    }

    func run() throws {
        try setup.apply()
        var memory = Memory()
        try memory.grow(by: initial.bytes)
        announce("ready \(getpid())")

        let limit = max?.bytes ?? Int.max
        let start = monotonicSeconds()
        while memory.bytes < limit {
            usleep(10_000)
            // The target follows the clock, so late or short steps don't change the rate.
            let target = Double(initial.bytes) + Double(rate.bytes) * (monotonicSeconds() - start)
            let want = target >= Double(limit) ? limit : Int(target)
            if want > memory.bytes {
                try memory.grow(by: want - memory.bytes, chunk: 64 << 20)
            }
        }
        sleepForever()
    }
}

struct Thrash: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Map SIZE bytes, print 'ready <pid>', then write every page over and over, in order, until killed.",
        discussion: """
            A working set that is all hot: in a memory cgroup whose limit is below \
            SIZE, with swap on, every pass swaps out the pages the next pass needs \
            (refaults); below the limit it is a busy but healthy process.
            """)

    @Option(help: ArgumentHelp("Working set to cycle through.", valueName: "size"))
    var rss: Size

    @OptionGroup var setup: Setup

    func run() throws {
        try setup.apply()
        let size = (rss.bytes + Memory.pageSize - 1) / Memory.pageSize * Memory.pageSize
        let address = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
        guard let address, address != UnsafeMutableRawPointer(bitPattern: -1) else {
            throw Failure.errno("mmap of \(rss)")
        }
        announce("ready \(getpid())")
        var pass: UInt64 = 1
        while true {
            for offset in stride(from: 0, to: size, by: Memory.pageSize) {
                // Non-zero and new on every pass: zram cannot keep it as a same-filled page.
                address.storeBytes(of: UInt64(offset) &+ (pass << 40) | 1, toByteOffset: offset, as: UInt64.self)
            }
            // The mapping is never read, so an optimized build would drop
            // every store above (the pages were never touched: the release
            // binary spun on the CPU at ~12 MiB RSS). Handing the address to
            // the kernel once a pass (a no-op: length 0) makes them observable.
            madvise(address, 0, MADV_NORMAL)
            pass += 1
        }
    }
}

struct Idle: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fork N children that each hold --rss, print 'ready', and wait.",
        discussion: """
            On SIGTERM, SIGINT or SIGHUP, or at EOF on stdin when stdin is a pipe or a \
            socket, the parent kills and reaps every child and exits 0. The children \
            also die (SIGKILL) if the parent dies.
            """
    )

    @Option(help: "Number of child processes.")
    var count: Int

    @Option(help: ArgumentHelp("Resident memory each child holds.", valueName: "size"))
    var rss = Size(bytes: 256 << 10)

    @OptionGroup var setup: Setup

    func validate() throws {
        guard (1...100_000).contains(count) else { throw ValidationError("--count must be in 1...100000") }
    }

    func run() throws {
        try setup.apply()  // children inherit the cgroup and oom_score_adj
        let dieWithParent = try parentDeathSignal()
        let parent = getpid()
        var ready: [Int32] = [0, 0]
        guard pipe(&ready) == 0 else { throw Failure.errno("pipe") }

        var children: [pid_t] = []
        for _ in 0..<count {
            let pid = fork()
            if pid == 0 {
                close(ready[0])
                // Armed after fork, so check the parent did not die before it was.
                if dieWithParent(SIGKILL) != 0 || getppid() != parent { _exit(1) }
                var memory = Memory()
                if (try? memory.grow(by: rss.bytes)) == nil { _exit(1) }
                var byte: UInt8 = 1
                _ = write(ready[1], &byte, 1)
                close(ready[1])
                sleepForever()
            }
            if pid < 0 {
                let failure = Failure.errno("fork (child \(children.count + 1) of \(count))")
                reap(children)
                throw failure
            }
            children.append(pid)
        }

        // One byte per resident child; EOF first means some child died.
        close(ready[1])
        var readyCount = 0
        var buffer = [UInt8](repeating: 0, count: 256)
        while readyCount < count {
            let n = read(ready[0], &buffer, buffer.count)
            if n > 0 {
                readyCount += n
            } else if n == 0 || errno != EINTR {
                reap(children)
                throw Failure("\(count - readyCount) of \(count) children died before their memory was resident")
            }
        }
        close(ready[0])
        announce("ready")

        waitForStop()
        reap(children)
    }

    /// Kills and waits for every child.
    private func reap(_ children: [pid_t]) {
        for pid in children { kill(pid, SIGKILL) }
        for pid in children { while waitpid(pid, nil, 0) < 0 && errno == EINTR {} }
    }

    /// Returns on SIGTERM, SIGINT or SIGHUP, or at EOF on a piped stdin.
    private func waitForStop() {
        var signals = sigset_t()
        sigemptyset(&signals)
        for signal in [SIGTERM, SIGINT, SIGHUP] { sigaddset(&signals, signal) }
        pthread_sigmask(SIG_BLOCK, &signals, nil)  // before the thread, which inherits it

        var stdinStat = stat()
        if fstat(0, &stdinStat) == 0,
            [S_IFIFO, S_IFSOCK].contains(stdinStat.st_mode & S_IFMT)
        {
            // A thread reads stdin to EOF and then stops us like a SIGTERM would.
            var thread = pthread_t()
            pthread_create(&thread, nil, { _ in
                var buffer = [UInt8](repeating: 0, count: 256)
                while true {
                    let n = read(0, &buffer, buffer.count)
                    if n == 0 || (n < 0 && errno != EINTR) { break }
                }
                kill(getpid(), SIGTERM)
                return nil
            }, nil)
        }
        var received: Int32 = 0
        sigwait(&signals, &received)
    }
}

// MARK: - Setup shared by every workload

struct Setup: ParsableArguments {
    @Option(help: ArgumentHelp("Join this cgroup (pid into DIR/cgroup.procs) before allocating.", valueName: "dir"))
    var cgroup: String?

    @Option(parsing: .unconditional, help: ArgumentHelp("Write N to /proc/self/oom_score_adj.", valueName: "n"))
    var oomScoreAdj: Int?

    func validate() throws {
        if let oomScoreAdj, !(-1000...1000).contains(oomScoreAdj) {
            throw ValidationError("--oom-score-adj must be in -1000...1000, not \(oomScoreAdj)")
        }
    }

    func apply() throws {
        if let cgroup {
            try writeFile("\(cgroup)/cgroup.procs", "\(getpid())\n", failing: "cannot join cgroup \(cgroup)")
        }
        if let oomScoreAdj {
            try writeFile("/proc/self/oom_score_adj", "\(oomScoreAdj)\n", failing: "cannot set oom_score_adj")
        }
    }
}

// MARK: - Sizes

/// A byte count written as digits with an optional K, M or G (binary) suffix.
struct Size: ExpressibleByArgument, CustomStringConvertible {
    let bytes: Int

    init(bytes: Int) { self.bytes = bytes }

    init?(argument: String) {
        var digits = Substring(argument)
        var unit = 1
        switch digits.last {
        case "K", "k": unit = 1 << 10
        case "M", "m": unit = 1 << 20
        case "G", "g": unit = 1 << 30
        default: break
        }
        if unit != 1 { digits = digits.dropLast() }
        guard !digits.isEmpty, digits.allSatisfy({ ("0"..."9").contains($0) }),
            let count = Int(digits)
        else { return nil }
        let (bytes, overflow) = count.multipliedReportingOverflow(by: unit)
        guard !overflow else { return nil }
        self.bytes = bytes
    }

    var description: String {
        for (suffix, shift) in [("G", 30), ("M", 20), ("K", 10)] where bytes != 0 && bytes % (1 << shift) == 0 {
            return "\(bytes >> shift)\(suffix)"
        }
        return "\(bytes)"
    }

    var defaultValueDescription: String { description }
}

// MARK: - Memory

/// Anonymous memory that only grows: every byte counted in `bytes` is resident.
struct Memory {
    static let pageSize = 4096

    /// Bytes mapped and touched so far, a multiple of the page size.
    private(set) var bytes = 0
    private var chunk: UnsafeMutableRawPointer?
    private var chunkSize = 0
    private var chunkUsed = 0

    /// Maps and touches `count` more bytes (rounded up to whole pages), in new
    /// mappings of at least `chunk` bytes. Fails if the kernel refuses a mapping.
    mutating func grow(by count: Int, chunk minimumChunk: Int = 0) throws {
        var left = (count + Memory.pageSize - 1) / Memory.pageSize * Memory.pageSize
        while left > 0 {
            if chunkUsed == chunkSize {
                let size = Swift.max(left, minimumChunk)
                let address = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
                guard let address, address != UnsafeMutableRawPointer(bitPattern: -1) else {
                    throw Failure.errno("mmap of \(Size(bytes: size)) (\(Size(bytes: bytes)) already resident)")
                }
                (chunk, chunkSize, chunkUsed) = (address, size, 0)
            }
            let n = Swift.min(left, chunkSize - chunkUsed)
            for offset in stride(from: 0, to: n, by: Memory.pageSize) {
                // Non-zero and different on every page: no zero page, nothing for KSM.
                let value = UInt64(bytes + offset) | 1
                chunk!.storeBytes(of: value, toByteOffset: chunkUsed + offset, as: UInt64.self)
            }
            chunkUsed += n
            bytes += n
            left -= n
        }
    }
}

// MARK: - Helpers

struct Failure: Error, CustomStringConvertible {
    let description: String

    init(_ description: String) { self.description = description }

    /// `what: strerror(errno)`.
    static func errno(_ what: String) -> Failure {
        Failure("\(what): \(String(cString: strerror(Glibc.errno)))")
    }
}

func writeAll(_ fd: Int32, _ text: String) -> Bool {
    var bytes = Array(text.utf8)[...]
    while !bytes.isEmpty {
        let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { return false }
        bytes = bytes.dropFirst(n)
    }
    return true
}

func writeFile(_ path: String, _ text: String, failing what: String) throws {
    let fd = open(path, O_WRONLY | O_CLOEXEC)
    guard fd >= 0 else { throw Failure.errno("\(what): \(path)") }
    defer { close(fd) }
    guard writeAll(fd, text) else { throw Failure.errno("\(what): \(path)") }
}

/// One line on stdout, unbuffered, so a reader sees it at once.
func announce(_ line: String) {
    _ = writeAll(1, line + "\n")
}

func printError(_ line: String) {
    _ = writeAll(2, line + "\n")
}

func sleepForever() -> Never {
    while true { pause() }
}

func monotonicSeconds() -> Double {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
}

/// prctl(PR_SET_PDEATHSIG, signal). prctl is variadic, which Swift cannot
/// call, so it is looked up and called as a fixed-argument C function.
func parentDeathSignal() throws -> (Int32) -> Int32 {
    typealias Prctl = @convention(c) (Int32, UInt, UInt, UInt, UInt) -> Int32
    guard let symbol = dlsym(nil, "prctl") else { throw Failure("prctl not found") }
    let prctl = unsafeBitCast(symbol, to: Prctl.self)
    let PR_SET_PDEATHSIG: Int32 = 1  // <linux/prctl.h>, not imported by Glibc
    return { signal in prctl(PR_SET_PDEATHSIG, UInt(signal), 0, 0, 0) }
}
