import CLibBPF
import SystemPackage
#if canImport(Glibc)
import Glibc
#endif

/// One program of a ``BPFObject``: its section, type and size, and once the
/// object is loaded its kernel statistics, attachment and test runs.
///
/// A view: the file descriptor belongs to the object.
public struct BPFProgram {
    public let object: BPFObject
    let handle: OpaquePointer

    init(object: BPFObject, handle: OpaquePointer) {
        self.object = object
        self.handle = handle
    }

    public var name: String { String(cString: bpf_program__name(handle)) }
    /// The ELF section, e.g. `syscall` or `tracepoint/kmem/rss_stat`.
    public var sectionName: String { String(cString: bpf_program__section_name(handle)) }
    public var type: BPFProgramType { BPFProgramType(raw: bpf_program__type(handle)) }
    /// BPF instructions as compiled (before the verifier's rewrites).
    public var instructionCount: Int { bpf_program__insn_cnt(handle) }
    /// The program's fd once loaded, else nil.
    public var fd: Int32? {
        let fd = bpf_program__fd(handle)
        return fd >= 0 ? fd : nil
    }

    /// The kernel's facts about the loaded program.
    public func info() throws(BPFError) -> BPFProgramInfo {
        guard let fd else { throw notLoaded(.query) }
        return try BPFProgramInfo(fd: fd, program: name, object: object.name)
    }

    /// Attaches a tracepoint, raw_tp, tp_btf or iterator program where its
    /// section says. The returned link detaches when released.
    public func attach() throws(BPFError) -> BPFLink {
        guard fd != nil else { throw notLoaded(.attach) }
        let mark = LibbpfLog.mark
        let link = sectionName.hasPrefix("iter/") ? bpf_program__attach_iter(handle, nil) : bpf_program__attach(handle)
        guard let link else {
            let code = Errno(rawValue: errno)
            throw BPFError(
                .attach, object: object.name, program: name, errno: code,
                reason: "the kernel refused to attach it at '\(sectionName)'",
                fix: "Check that the attach point exists (ls /sys/kernel/tracing/events) and that the kernel supports this program type here",
                libbpfMessages: LibbpfLog.messages(since: mark, mentioning: name))
        }
        return BPFLink(handle: link, program: name, object: object.name)
    }

    /// Runs a `syscall` program once with BPF_PROG_RUN on `context`, which the
    /// kernel copies in and, modified by the program, back out. Returns the
    /// program's return value.
    @discardableResult
    public func run<Context: BitwiseCopyable>(context: inout Context) throws(BPFError) -> UInt32 {
        guard let fd else { throw notLoaded(.run) }
        var opts = bpf_test_run_opts()
        opts.sz = MemoryLayout<bpf_test_run_opts>.size
        let rc = withUnsafeMutableBytes(of: &context) { bytes -> Int32 in
            opts.ctx_in = UnsafeRawPointer(bytes.baseAddress)
            opts.ctx_size_in = UInt32(bytes.count)
            return bpf_prog_test_run_opts(fd, &opts)
        }
        if rc != 0 {
            throw BPFError(
                .run, object: object.name, program: name, errno: Errno(rawValue: -rc),
                reason: "BPF_PROG_RUN failed", fix: "Only `syscall` programs can be run this way; check the context size")
        }
        return opts.retval
    }

    /// Pins the program at `path` on a bpf filesystem.
    public func pin(at path: String) throws(BPFError) {
        let rc = bpf_program__pin(handle, path)
        if rc != 0 {
            throw BPFError(.pin, object: object.name, program: name, errno: Errno(rawValue: -rc),
                           reason: "cannot pin at '\(path)'", fix: "Mount bpffs (`mount -t bpf bpf /sys/fs/bpf`) and check the directory exists")
        }
    }

    public func unpin(at path: String) throws(BPFError) {
        let rc = bpf_program__unpin(handle, path)
        if rc != 0 { throw BPFError(.unpin, object: object.name, program: name, errno: Errno(rawValue: -rc), reason: "cannot unpin '\(path)'") }
    }

    private func notLoaded(_ operation: BPFError.Operation) -> BPFError {
        BPFError(operation, object: object.name, program: name, reason: "the object is not loaded", fix: "Call load() first")
    }
}

/// A program's type, with libbpf's name for it (e.g. `syscall`, `tracepoint`).
public struct BPFProgramType: Sendable, Equatable, CustomStringConvertible {
    public let raw: bpf_prog_type
    public var description: String { libbpf_bpf_prog_type_str(raw).map { String(cString: $0) } ?? "type \(raw.rawValue)" }
    public static let syscall = BPFProgramType(raw: BPF_PROG_TYPE_SYSCALL)
    public static let tracepoint = BPFProgramType(raw: BPF_PROG_TYPE_TRACEPOINT)
    public static func == (a: Self, b: Self) -> Bool { a.raw.rawValue == b.raw.rawValue }
}

/// What the kernel reports about a loaded program.
public struct BPFProgramInfo: Sendable, Equatable {
    public var id: UInt32
    /// Instructions the verifier processed (its measure of the program's complexity).
    public var verifiedInstructions: Int
    public var translatedBytes: Int
    public var jitedBytes: Int
    /// Runs and total run time; counted only while kernel.bpf_stats_enabled is 1.
    public var runCount: UInt64
    public var runTimeNanoseconds: UInt64

    /// The facts of the program behind `fd`, any loaded program's descriptor
    /// (e.g. one a sampler was handed without its object). `program` and
    /// `object` only name it in errors.
    public init(fd: Int32, program: String, object: String) throws(BPFError) {
        var info = bpf_prog_info()
        var length = UInt32(MemoryLayout<bpf_prog_info>.size)
        let rc = bpf_obj_get_info_by_fd(fd, &info, &length)
        if rc != 0 {
            throw BPFError(.query, object: object, program: program, errno: Errno(rawValue: -rc), reason: "the kernel gives no program info")
        }
        self.init(
            id: info.id, verifiedInstructions: Int(info.verified_insns),
            translatedBytes: Int(info.xlated_prog_len), jitedBytes: Int(info.jited_prog_len),
            runCount: info.run_cnt, runTimeNanoseconds: info.run_time_ns)
    }

    init(id: UInt32, verifiedInstructions: Int, translatedBytes: Int, jitedBytes: Int, runCount: UInt64, runTimeNanoseconds: UInt64) {
        self.id = id
        self.verifiedInstructions = verifiedInstructions
        self.translatedBytes = translatedBytes
        self.jitedBytes = jitedBytes
        self.runCount = runCount
        self.runTimeNanoseconds = runTimeNanoseconds
    }
}
