// `mmpolicy-workload hotcold`: memory with a known hot part and a known cold
// part (and optionally a cold part that does not compress), for tests and
// benchmarks of tiering (which memory a policy demotes, what faults back in,
// what it leaves resident because zram would store it whole).
import ArgumentParser
import Glibc

struct HotCold: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hotcold",
        abstract: "Map a hot and a cold part, touch both, say where they are, then keep touching the hot part.",
        discussion: """
            Each part is its own anonymous private mapping that starts on a 2 MiB boundary (a \
            tiering region: no region holds both parts), with transparent huge pages off \
            (MADV_NOHUGEPAGE: every 4 KiB page faults on its own). Both are touched once, one \
            write of a distinct non-zero word per page, then it prints
              ready <pid> hot 0x<start> <bytes> cold 0x<start> <bytes>
            (start in hex, 0x0 for an empty part) and writes every page of the hot part once \
            every --interval-ms (0: back to back) until killed; the cold part is not touched \
            again. With --incompressible SIZE a third mapping (its own, on a 2 MiB boundary) is \
            filled with random bytes when the others are first touched and never again: cold \
            memory that zram stores whole; the ready line then ends with \
            " incompressible 0x<start> <bytes>". SIGUSR1: one pass over every page of every part (a page paged out meanwhile \
            faults back in), then it prints "touched <pages>". SIGUSR2: every part is written \
            to a memfd with write(2), so the kernel reads every page (a page paged out faults \
            back in, in kernel mode: no user page fault), then it prints "copied <pages>". \
            With --untouched, "ready" comes \
            before any touch (nothing resident) and the hot loop waits for the first SIGUSR1, \
            whose pass is then the first touch of every page: start it, track it, signal it.
            """)

    @Option(help: ArgumentHelp("The part touched over and over.", valueName: "size"))
    var hot: Size

    @Option(help: ArgumentHelp("The part touched once.", valueName: "size"))
    var cold: Size

    @Option(help: ArgumentHelp("A cold part of random bytes (incompressible), touched once.", valueName: "size"))
    var incompressible: Size?

    @Option(help: "Pause between two passes over the hot part, in milliseconds (0: none).")
    var intervalMs = 10

    @Flag(help: "Print 'ready' before touching anything; the first SIGUSR1 makes the first touch.")
    var untouched = false

    @OptionGroup var setup: Setup

    func validate() throws {
        guard hot.bytes > 0 || cold.bytes > 0 || (incompressible?.bytes ?? 0) > 0 else {
            throw ValidationError("--hot, --cold and --incompressible are all 0: nothing to map")
        }
        guard intervalMs >= 0 else { throw ValidationError("--interval-ms must be 0 or more") }
    }

    func run() throws {
        // Blocked before anything else, so an early SIGUSR1 waits instead of killing us.
        var signals = sigset_t()
        sigemptyset(&signals)
        sigaddset(&signals, SIGUSR1)
        sigaddset(&signals, SIGUSR2)
        pthread_sigmask(SIG_BLOCK, &signals, nil)
        try setup.apply()

        let hotPart = try AlignedMapping(bytes: hot.bytes)
        let coldPart = try AlignedMapping(bytes: cold.bytes)
        let randomPart = try AlignedMapping(bytes: incompressible?.bytes ?? 0)
        let pages = (hotPart.bytes + coldPart.bytes + randomPart.bytes) / Memory.pageSize
        var pass: UInt64 = 1
        var touched = !untouched
        if touched {
            hotPart.touch(pass: pass)
            coldPart.touch(pass: pass)
            randomPart.fillRandom()
        }
        // The third part only when asked for: parsers of the 8-word line keep working.
        let third = incompressible == nil ? "" : " incompressible \(randomPart.location)"
        announce("ready \(getpid()) hot \(hotPart.location) cold \(coldPart.location)\(third)")

        while true {
            let looping = touched && hotPart.bytes > 0
            if looping {
                pass += 1
                hotPart.touch(pass: pass)
            }
            var timeout = timespec(tv_sec: intervalMs / 1000, tv_nsec: (intervalMs % 1000) * 1_000_000)
            let received = looping ? sigtimedwait(&signals, nil, &timeout) : sigwaitinfo(&signals, nil)
            if received == SIGUSR2 {
                try hotPart.copyToMemfd()
                try coldPart.copyToMemfd()
                try randomPart.copyToMemfd()
                announce("copied \(pages)")
                continue
            }
            guard received == SIGUSR1 else { continue }  // timeout or EINTR
            pass += 1
            hotPart.touch(pass: pass)
            coldPart.touch(pass: pass)
            // A word per page of a random page leaves it random.
            if touched { randomPart.touch(pass: pass) } else { randomPart.fillRandom() }
            touched = true
            announce("touched \(pages)")
        }
    }
}

/// An anonymous private mapping that starts on a 2 MiB boundary, without
/// transparent huge pages; empty for 0 bytes. Never unmapped.
struct AlignedMapping {
    static let alignment = 2 << 20

    let start: UnsafeMutableRawPointer?
    /// Mapped bytes, whole pages.
    let bytes: Int

    init(bytes requested: Int) throws {
        bytes = (requested + Memory.pageSize - 1) / Memory.pageSize * Memory.pageSize
        guard bytes > 0 else { start = nil; return }
        // Over-map by the alignment, then give back the unaligned head and the tail.
        let span = bytes + Self.alignment
        guard let raw = mmap(nil, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0),
              raw != UnsafeMutableRawPointer(bitPattern: -1)
        else { throw Failure.errno("mmap of \(Size(bytes: span))") }
        let address = UInt(bitPattern: raw)
        let aligned = (address + UInt(Self.alignment) - 1) & ~UInt(Self.alignment - 1)
        let head = Int(aligned - address)
        if head > 0 { munmap(raw, head) }
        let tail = span - head - bytes
        if tail > 0 { munmap(raw + head + bytes, tail) }
        start = raw + head
        guard madvise(start, bytes, MADV_NOHUGEPAGE) == 0 else { throw Failure.errno("madvise(MADV_NOHUGEPAGE)") }
    }

    /// "0x<start> <bytes>", as in the ready line.
    var location: String { "0x\(String(UInt(bitPattern: start), radix: 16)) \(bytes)" }

    /// Writes one word into every page: non-zero and new on every pass, so
    /// zram cannot keep a page as a same-filled one and the write is real.
    func touch(pass: UInt64) {
        guard let start else { return }
        for offset in stride(from: 0, to: bytes, by: Memory.pageSize) {
            start.storeBytes(of: UInt64(offset) &+ (pass << 40) | 1, toByteOffset: offset, as: UInt64.self)
        }
        // Nothing reads the memory: handing its address to the kernel (a
        // no-op, length 0) keeps an optimized build from dropping the stores.
        madvise(start, 0, MADV_NORMAL)
    }

    /// Fills every page with pseudo-random bytes (xorshift64*, seeded from
    /// the clock): no page compresses, so zram stores each whole.
    func fillRandom() {
        guard let start else { return }
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        var state = UInt64(bitPattern: Int64(now.tv_nsec)) | 1
        let words = start.bindMemory(to: UInt64.self, capacity: bytes / 8)
        for index in 0..<bytes / 8 {
            state ^= state >> 12
            state ^= state << 25
            state ^= state >> 27
            words[index] = state &* 0x2545_F491_4F6C_DD1D
        }
    }

    /// Has the kernel read every page: write(2) of the whole part into a
    /// throwaway memfd (copy_from_user).
    func copyToMemfd() throws {
        guard let start else { return }
        typealias MemfdCreate = @convention(c) (UnsafePointer<CChar>, UInt32) -> Int32  // needs _GNU_SOURCE
        let memfdCreate = unsafeBitCast(dlsym(nil, "memfd_create")!, to: MemfdCreate.self)
        let fd = memfdCreate("hotcold-copy", 1 /* MFD_CLOEXEC */)
        guard fd >= 0 else { throw Failure.errno("memfd_create") }
        defer { close(fd) }
        var done = 0
        while done < bytes {
            let n = write(fd, start + done, bytes - done)
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw Failure.errno("write to a memfd") }
            done += n
        }
    }
}
