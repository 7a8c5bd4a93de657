// `mmpolicy-workload tierload`: the tiering benchmark's process. A hot set
// touched at random in a tight loop whose throughput it reports, a cold set
// of compressible data touched once, and an incompressible part (random
// bytes) touched once. See bench/README.md, "Tiering".
import ArgumentParser
import Glibc
import Synchronization

struct TierLoad: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tierload",
        abstract: "Hot, cold (compressible) and incompressible memory; a random-touch loop on the hot part, its throughput on stdout.",
        discussion: """
            Three anonymous private mappings, each on a 2 MiB boundary with transparent huge \
            pages off (one tiering region never holds two parts). The hot and cold parts are \
            filled with log-like text (lines from 8 templates with random numbers in them: lz4 \
            stores a page in about 1.5 KiB, ~2.7x; no two pages alike, none zero-filled, so \
            zram keeps none as a same-filled page); the incompressible part with random bytes \
            (xorshift: lz4 cannot shrink it). Then it prints
              ready <pid> hot 0x<start> <bytes> cold 0x<start> <bytes> incompressible 0x<start> <bytes>
            and runs the hot loop until killed: each touch adds 1 to the first word of a random \
            64-byte line of the hot part (xorshift index: a few ns of work, so the loop's rate \
            is the memory's). With --duty-percent below 100 the loop runs that share of every \
            10 ms, starting at a random point of the period, and sleeps the rest. Every --report-ms a second thread prints
              tput <CLOCK_MONOTONIC ns> <touches so far> <hot loop thread's CPU ns so far>
            The cold and incompressible parts are never touched again.
            """)

    @Option(help: ArgumentHelp("The part touched at random, over and over.", valueName: "size"))
    var hot: Size

    @Option(help: ArgumentHelp("Compressible data touched once.", valueName: "size"))
    var cold: Size

    @Option(help: ArgumentHelp("Random bytes touched once.", valueName: "size"))
    var incompressible = Size(bytes: 0)

    @Option(help: "Milliseconds between two 'tput' lines.")
    var reportMs = 1000

    @Option(help: "Share of every 10 ms the hot loop runs, in percent (100: always).")
    var dutyPercent = 100

    @Option(help: "Seed of the data and of the touch order (default: from the pid).")
    var seed: UInt64?

    @OptionGroup var setup: Setup

    func validate() throws {
        guard hot.bytes >= 64 << 10 else { throw ValidationError("--hot must be at least 64K") }
        guard reportMs >= 10 else { throw ValidationError("--report-ms must be at least 10") }
        guard (1...100).contains(dutyPercent) else { throw ValidationError("--duty-percent must be in 1...100") }
    }

    func run() throws {
        try setup.apply()
        let dieWithParent = try parentDeathSignal()
        guard dieWithParent(SIGKILL) == 0 else { throw Failure.errno("prctl(PR_SET_PDEATHSIG)") }
        let seed = self.seed ?? UInt64(getpid()) &* 0x9E37_79B9_7F4A_7C15 | 1

        let hotPart = try AlignedMapping(bytes: hot.bytes)
        let coldPart = try AlignedMapping(bytes: cold.bytes)
        let randomPart = try AlignedMapping(bytes: incompressible.bytes)
        LogText.fill(hotPart, seed: seed ^ 0x68_6f74)
        LogText.fill(coldPart, seed: seed ^ 0x636f_6c64)
        RandomBytes.fill(randomPart, seed: seed ^ 0x7261_6e64)

        let loop = HotLoop(mapping: hotPart, seed: seed, dutyPercent: dutyPercent)
        // The hot loop runs on this thread; the reporter reads its CPU clock.
        var clock = clockid_t()
        guard pthread_getcpuclockid(pthread_self(), &clock) == 0 else { throw Failure("pthread_getcpuclockid failed") }
        let touches = loop.touches
        let interval = reportMs
        _ = try Worker {
            while true {
                usleep(UInt32(interval * 1000))
                var cpu = timespec()
                clock_gettime(clock, &cpu)
                let ns = UInt64(cpu.tv_sec) * 1_000_000_000 + UInt64(cpu.tv_nsec)
                announce("tput \(monotonicNanoseconds()) \(touches.load()) \(ns)")
            }
        }
        announce("ready \(getpid()) hot \(hotPart.location) cold \(coldPart.location) incompressible \(randomPart.location)")
        loop.run()
    }
}

/// The hot loop: random 64-byte lines of one mapping, read and written.
///
/// Exists apart from the command so its inner loop stays a few
/// instructions: an xorshift step, a multiply-shift for the index (no
/// division), one load and one store; the clock is read and the count
/// published once every 256 touches.
struct HotLoop {
    final class Counter: Sendable {
        let value = Atomic<UInt64>(0)
        func load() -> UInt64 { value.load(ordering: .relaxed) }
    }

    let base: UnsafeMutableRawPointer
    let lines: UInt64
    let seed: UInt64
    let dutyPercent: Int
    /// Touches done so far, published every 256.
    let touches = Counter()

    init(mapping: AlignedMapping, seed: UInt64, dutyPercent: Int) {
        base = mapping.start!
        lines = UInt64(mapping.bytes / 64)
        self.seed = seed
        self.dutyPercent = dutyPercent
    }

    static let periodNs: UInt64 = 10_000_000

    func run() -> Never {
        var x = seed | 1
        var count: UInt64 = 0
        let burstNs = Self.periodNs * UInt64(dutyPercent) / 100
        let slack = Self.periodNs - burstNs
        var periodStart = monotonicNanoseconds()
        var phase = seed ^ 0x5DEE_CE66
        while true {
            var burstEnd = UInt64.max
            if dutyPercent < 100 {
                // The burst starts at a random point of its period: loops of
                // several processes then overlap by chance, the same on
                // average for each of them, not in a pattern that drifts.
                phase ^= phase << 13
                phase ^= phase >> 7
                phase ^= phase << 17
                let start = periodStart + (slack == 0 ? 0 : phase % slack)
                Self.sleep(until: start)
                burstEnd = max(start, monotonicNanoseconds()) + burstNs
            }
            var now: UInt64
            repeat {
                for _ in 0..<256 {
                    x ^= x << 13
                    x ^= x >> 7
                    x ^= x << 17
                    let line = ((x >> 32) &* lines) >> 32
                    let word = base + Int(line) * 64
                    word.storeBytes(of: word.load(as: UInt64.self) &+ 1, as: UInt64.self)
                }
                count &+= 256
                touches.value.store(count, ordering: .relaxed)
                now = monotonicNanoseconds()
            } while now < burstEnd
            guard dutyPercent < 100 else { continue }
            // The next period; one that overran starts now.
            periodStart += Self.periodNs
            if periodStart < now { periodStart = now }
        }
    }

    static func sleep(until ns: UInt64) {
        var deadline = timespec(tv_sec: Int(ns / 1_000_000_000), tv_nsec: Int(ns % 1_000_000_000))
        while clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &deadline, nil) == EINTR {}
    }
}

/// Log-like text that lz4 compresses about 2.7x page by page, as zram does.
///
/// Exists because the benchmark's cold memory must cost what real cold
/// memory costs in zram: all-zero pages are stored for free (same_pages)
/// and random bytes not at all, neither like a heap. Each 4 KiB page is
/// lines from 8 templates with two random numbers each, cut at the page's
/// end; the numbers make every page different.
enum LogText {
    /// Each template as the text before, between and after its two numbers.
    static let templates: [[[UInt8]]] = [
        ["INFO request GET /api/v1/items id=", " status=200 latency_ms=", "\n"],
        ["INFO request POST /api/v1/users id=", " status=201 latency_ms=", "\n"],
        ["WARN cache miss key=session:", " region=eu-west retry=", "\n"],
        ["DEBUG db.query select * from orders where id=", " took ", " us\n"],
        ["INFO backend shard=", " replied bytes=", "\n"],
        ["ERROR upstream timeout host=10.0.", ".7 after ", " ms\n"],
        ["INFO cache hit key=user:", " ttl=", "\n"],
        ["DEBUG trace span=", " parent=", " sampled=true\n"],
    ].map { $0.map { Array($0.utf8) } }

    static func fill(_ mapping: AlignedMapping, seed: UInt64) {
        guard let start = mapping.start else { return }
        let bytes = start.assumingMemoryBound(to: UInt8.self)
        var x = seed | 1
        // One line is built here, then copied into the page (cut at its end).
        let line = UnsafeMutablePointer<UInt8>.allocate(capacity: 128)
        defer { line.deallocate() }
        for page in stride(from: 0, to: mapping.bytes, by: Memory.pageSize) {
            var at = page
            let end = page + Memory.pageSize
            while at < end {
                x ^= x << 13
                x ^= x >> 7
                x ^= x << 17
                let parts = templates[Int(x & 7)]
                var n = 0
                n = put(parts[0], line, n)
                n = put(number: (x >> 3) % 100_000, line, n)
                n = put(parts[1], line, n)
                n = put(number: (x >> 20) % 1000, line, n)
                n = put(parts[2], line, n)
                let count = min(n, end - at)
                (bytes + at).update(from: line, count: count)
                at += count
            }
        }
    }

    /// Appends `text` at `line[n]`; the new length.
    private static func put(_ text: [UInt8], _ line: UnsafeMutablePointer<UInt8>, _ n: Int) -> Int {
        text.withUnsafeBufferPointer { (line + n).update(from: $0.baseAddress!, count: $0.count) }
        return n + text.count
    }

    /// Appends `number` in decimal at `line[n]`; the new length.
    private static func put(number: UInt64, _ line: UnsafeMutablePointer<UInt8>, _ n: Int) -> Int {
        var digits = 1, rest = number
        while rest >= 10 { rest /= 10; digits += 1 }
        rest = number
        for i in stride(from: digits - 1, through: 0, by: -1) {
            line[n + i] = UInt8(48 + rest % 10)
            rest /= 10
        }
        return n + digits
    }
}

/// Random bytes (xorshift64): data no compressor can shrink, like already
/// compressed or encrypted memory.
enum RandomBytes {
    static func fill(_ mapping: AlignedMapping, seed: UInt64) {
        guard let start = mapping.start else { return }
        let words = start.assumingMemoryBound(to: UInt64.self)
        var x = seed | 1
        for i in 0..<(mapping.bytes / 8) {
            x ^= x << 13
            x ^= x >> 7
            x ^= x << 17
            words[i] = x &* 0x2545_F491_4F6C_DD1D
        }
    }
}

/// CLOCK_MONOTONIC in nanoseconds (the benchmark's clock).
func monotonicNanoseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
}
