/// One line of /proc/PID/maps: a virtual memory area of a process.
///
/// Exists so that tiering can tell the memory it may move (a process's own
/// anonymous memory) from what it must leave alone (files, shared memory,
/// the kernel's vdso pages).
public struct MemoryMapping: Sendable, Equatable {
    public var range: AddressRange
    public var isReadable: Bool
    public var isWritable: Bool
    public var isExecutable: Bool
    /// 's' in the permissions: shared with other processes (MAP_SHARED);
    /// otherwise private ('p', copy-on-write).
    public var isShared: Bool
    /// Offset into the file (0 for anonymous memory).
    public var offset: UInt64
    /// The file's device as the kernel prints it ("fd:01"; "00:00" when none).
    public var device: String
    /// The file's inode; 0 for anonymous memory.
    public var inode: UInt64
    /// The file's path, a pseudo-name ("[heap]", "[stack]", "[vdso]",
    /// "[anon:NAME]") or "" for unnamed anonymous memory. A deleted file ends
    /// in " (deleted)"; a newline in a path is printed as "\012".
    public var path: String

    public init(range: AddressRange, isReadable: Bool, isWritable: Bool, isExecutable: Bool, isShared: Bool,
                offset: UInt64 = 0, device: String = "00:00", inode: UInt64 = 0, path: String = "") {
        self.range = range
        self.isReadable = isReadable
        self.isWritable = isWritable
        self.isExecutable = isExecutable
        self.isShared = isShared
        self.offset = offset
        self.device = device
        self.inode = inode
        self.path = path
    }

    /// The process's own anonymous memory: private, writable, not backed by
    /// a file (inode 0), and unnamed, "[heap]", "[stack]" or "[anon:...]"
    /// (memory named with PR_SET_VMA_ANON_NAME). The kernel's special
    /// mappings ("[vdso]", "[vvar]", "[vvar_vclock]", "[vsyscall]",
    /// "[uprobes]", ...) are not; nor are the copy-on-written pages of a
    /// private file mapping (a library's .data), which swap too.
    public var isAnonymousPrivate: Bool {
        guard !isShared, isWritable, inode == 0 else { return false }
        if path.isEmpty || path == "[heap]" || path == "[stack]" { return true }
        return path.hasPrefix("[anon:") || path.hasPrefix("[stack:")
    }
}

/// A process's memory map, from /proc/PID/maps: which address ranges hold
/// what, and which of them are anonymous memory that tiering may move.
///
/// The file is read in pieces and a process may change its mappings in the
/// meantime, so the map is a recent view, not an atomic one: a range taken
/// from it may be gone when it is advised (process_madvise then says ENOMEM).
public struct ProcessMemoryMap: Sendable, Equatable {
    /// The mappings in address order.
    public var mappings: [MemoryMapping]
    /// The anonymous private memory (`MemoryMapping.isAnonymousPrivate`),
    /// sorted, adjacent mappings joined into one range (fewer ranges for
    /// process_madvise): the argument `AddressRange.clipped(to:)` expects.
    public var anonymousRanges: [AddressRange]

    public init(mappings: [MemoryMapping]) {
        self.mappings = mappings.sorted { $0.range.start < $1.range.start }
        anonymousRanges = AddressRange.merged(self.mappings.filter(\.isAnonymousPrivate).map(\.range))
    }

    /// Bytes of address space in `anonymousRanges` (mapped, not necessarily resident).
    public var anonymousBytes: UInt64 { anonymousRanges.reduce(0) { $0 + $1.length } }

    /// Parses the text of /proc/PID/maps.
    public init(parsing text: String, target: String = "/proc/PID/maps") throws(SystemCallError) {
        var text = text
        let parsed = text.withUTF8 { bytes in Self.parse(bytes) }
        switch parsed {
        case .success(let mappings): self.init(mappings: mappings)
        case .failure(let line):
            throw SystemCallError.format(target, "Expected lines 'START-END PERMS OFFSET MAJ:MIN INODE [PATH]', found '\(line.prefix(80))'.")
        }
    }

    /// Reads /proc/PID/maps. A process that is gone gives ESRCH or ENOENT
    /// (`SystemCallError.meansGone`); a kernel thread has an empty map.
    public static func read(pid: Int32) throws(SystemCallError) -> ProcessMemoryMap {
        let path = "/proc/\(pid)/maps"
        let text = try KernelFile.read(path, fix: { code in
            code == .noSuchProcess || code == .noSuchFileOrDirectory ? "Process \(pid) no longer exists." : KernelFile.defaultFix(code)
        })
        return try ProcessMemoryMap(parsing: text, target: path)
    }

    /// Reads the map of the process `pidfd` refers to, and checks that it
    /// was still alive after the read: the pid cannot have named a newer
    /// process meanwhile.
    public static func read(_ pidfd: PidFD) throws(SystemCallError) -> ProcessMemoryMap {
        let map = try read(pid: pidfd.pid)
        try pidfd.checkAlive(after: "/proc/\(pidfd.pid)/maps")
        return map
    }

    private enum Parsed { case success([MemoryMapping]), failure(String) }

    /// A byte-level parser: a process may have 65,530 mappings (vm.max_map_count).
    private static func parse(_ bytes: UnsafeBufferPointer<UInt8>) -> Parsed {
        var mappings: [MemoryMapping] = []
        var position = 0
        while position < bytes.count {
            var lineEnd = position
            while lineEnd < bytes.count, bytes[lineEnd] != UInt8(ascii: "\n") { lineEnd += 1 }
            if lineEnd > position {
                guard let mapping = parseLine(bytes, from: position, to: lineEnd) else {
                    return .failure(String(decoding: UnsafeBufferPointer(rebasing: bytes[position..<lineEnd]), as: UTF8.self))
                }
                mappings.append(mapping)
            }
            position = lineEnd + 1
        }
        return .success(mappings)
    }

    private static func parseLine(_ bytes: UnsafeBufferPointer<UInt8>, from start: Int, to end: Int) -> MemoryMapping? {
        var i = start
        func skipSpaces() { while i < end, bytes[i] == UInt8(ascii: " ") || bytes[i] == UInt8(ascii: "\t") { i += 1 } }
        func number(radix: UInt64, until stop: UInt8) -> UInt64? {
            var value: UInt64 = 0, digits = 0
            while i < end, bytes[i] != stop {
                let c = bytes[i]
                let digit: UInt64
                switch c {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt64(c - UInt8(ascii: "0"))
                case UInt8(ascii: "a")...UInt8(ascii: "f") where radix == 16: digit = UInt64(c - UInt8(ascii: "a") + 10)
                case UInt8(ascii: "A")...UInt8(ascii: "F") where radix == 16: digit = UInt64(c - UInt8(ascii: "A") + 10)
                default: return nil
                }
                let (shifted, overflow) = value.multipliedReportingOverflow(by: radix)
                guard !overflow else { return nil }
                value = shifted + digit
                digits += 1
                i += 1
            }
            return digits > 0 ? value : nil
        }
        let space = UInt8(ascii: " ")
        guard let low = number(radix: 16, until: UInt8(ascii: "-")), i < end else { return nil }
        i += 1
        guard let high = number(radix: 16, until: space), high >= low else { return nil }
        skipSpaces()
        guard end - i >= 4 else { return nil }
        let perms = (bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3])
        i += 4
        guard i < end, bytes[i] == space,
              perms.0 == UInt8(ascii: "r") || perms.0 == UInt8(ascii: "-"),
              perms.3 == UInt8(ascii: "p") || perms.3 == UInt8(ascii: "s") else { return nil }
        skipSpaces()
        guard let offset = number(radix: 16, until: space) else { return nil }
        skipSpaces()
        let deviceStart = i
        while i < end, bytes[i] != space { i += 1 }
        let device = String(decoding: UnsafeBufferPointer(rebasing: bytes[deviceStart..<i]), as: UTF8.self)
        guard device.contains(":") else { return nil }
        skipSpaces()
        guard let inode = number(radix: 10, until: space) else { return nil }
        skipSpaces()
        let path = i < end ? String(decoding: UnsafeBufferPointer(rebasing: bytes[i..<end]), as: UTF8.self) : ""
        return MemoryMapping(range: AddressRange(start: low, end: high),
                             isReadable: perms.0 == UInt8(ascii: "r"), isWritable: perms.1 == UInt8(ascii: "w"),
                             isExecutable: perms.2 == UInt8(ascii: "x"), isShared: perms.3 == UInt8(ascii: "s"),
                             offset: offset, device: device, inode: inode, path: path)
    }
}
