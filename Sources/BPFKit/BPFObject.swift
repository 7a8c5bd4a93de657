import CLibBPF
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// A BPF ELF object opened with libbpf: its programs, maps and parameters,
/// and, once loaded, the kernel objects behind them.
///
/// The object owns every file descriptor of its programs and maps (through
/// libbpf's `bpf_object`) and closes them all when it is released. Programs
/// and maps are views that keep their object alive.
public final class BPFObject {
    /// The name used in messages: the file's name, or the name given with the bytes.
    public let name: String
    /// The file it was read from, if any.
    public let path: String?
    /// The raw ELF, for readers of sections libbpf does not know (ops tables).
    public let elf: ELFImage
    public private(set) var isLoaded = false

    let handle: OpaquePointer
    private let image: UnsafeMutableRawBufferPointer
    private var logBuffers: [UnsafeMutableBufferPointer<CChar>] = []

    /// Size of the buffer that catches a failing program's verifier log. The
    /// kernel keeps the log's tail when it overflows, which is the part that
    /// explains the failure.
    public static let verifierLogSize = 1 << 20

    /// Opens the object at `path`.
    public convenience init(path: String) throws(BPFError) {
        let name = path.split(separator: "/").last.map(String.init) ?? path
        let bytes: [UInt8]
        do {
            let fd = try FileDescriptor.open(FilePath(path), .readOnly)
            bytes = try fd.closeAfter { try Self.readAll(fd) }
        } catch let error as Errno {
            let fix = error == .noSuchFileOrDirectory
                ? "Check the path, or run `make build` to build the in-tree objects" : nil
            throw BPFError(.read, object: name, errno: error, reason: "cannot read '\(path)'", fix: fix)
        } catch {
            throw BPFError(.read, object: name, reason: "cannot read '\(path)': \(error)")
        }
        try self.init(bytes: bytes, name: name, path: path)
    }

    /// Opens an object from its ELF bytes; `name` names it in messages and in
    /// libbpf (its internal maps are called `<name>.rodata` and so on).
    public init(bytes: [UInt8], name: String, path: String? = nil) throws(BPFError) {
        LibbpfLog.install()
        self.name = name
        self.path = path
        elf = try ELFImage(bytes: bytes, name: name)
        let image = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 8)
        image.copyBytes(from: bytes)
        self.image = image
        let mark = LibbpfLog.mark
        let objectName = name.hasSuffix(".bpf.o") ? String(name.dropLast(6)) : name
        var opts = bpf_object_open_opts()
        opts.sz = MemoryLayout<bpf_object_open_opts>.size
        let opened: OpaquePointer? = objectName.withCString { cName in
            opts.object_name = cName
            return bpf_object__open_mem(image.baseAddress, image.count, &opts)
        }
        guard let opened else {
            let code = Errno(rawValue: errno)
            image.deallocate()
            throw BPFError(
                .open, object: name, errno: code, reason: "libbpf cannot parse it",
                fix: "Check that it was built with `clang -target bpf -g` against this mmpolicy's headers",
                libbpfMessages: LibbpfLog.messages(since: mark))
        }
        handle = opened
    }

    deinit {
        bpf_object__close(handle)
        image.deallocate()
        freeLogBuffers()
    }

    static func readAll(_ fd: FileDescriptor) throws -> [UInt8] {
        var result: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = try chunk.withUnsafeMutableBytes { try fd.read(into: $0) }
            if n == 0 { return result }
            result.append(contentsOf: chunk[..<n])
        }
    }

    // MARK: Programs and maps

    public var programs: [BPFProgram] {
        var result: [BPFProgram] = []
        var cursor = bpf_object__next_program(handle, nil)
        while let prog = cursor {
            result.append(BPFProgram(object: self, handle: prog))
            cursor = bpf_object__next_program(handle, prog)
        }
        return result
    }

    public func program(named name: String) -> BPFProgram? {
        bpf_object__find_program_by_name(handle, name).map { BPFProgram(object: self, handle: $0) }
    }

    public var maps: [BPFMap] {
        var result: [BPFMap] = []
        var cursor = bpf_object__next_map(handle, nil)
        while let map = cursor {
            result.append(BPFMap(object: self, handle: map))
            cursor = bpf_object__next_map(handle, map)
        }
        return result
    }

    public func map(named name: String) -> BPFMap? {
        maps.first { $0.name == name }
    }

    // MARK: Parameters

    var btf: BTFReader? { bpf_object__btf(handle).map(BTFReader.init) }

    /// The object's `const volatile` globals: a policy's tunable parameters.
    public var parameters: [GlobalVariable] {
        btf?.variables(in: ".rodata").filter { !$0.name.hasPrefix("__") } ?? []
    }

    private var rodataMap: OpaquePointer? {
        maps.first { bpf_map__is_internal($0.handle) && $0.name.hasSuffix(".rodata") }?.handle
    }

    /// The value `variable` has in the object before anything is set.
    public func currentValue(of variable: GlobalVariable) -> ParameterValue? {
        guard let map = rodataMap else { return nil }
        var size = 0
        guard let data = bpf_map__initial_value(map, &size), variable.offset + variable.size <= size else { return nil }
        let bytes = Array(UnsafeRawBufferPointer(start: data + variable.offset, count: variable.size))
        switch variable.type {
        case .boolean: return .boolean(bytes.first != 0)
        case .characters:
            return .string(String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self))
        case .integer(let width, let signed), .enumeration(let width, let signed):
            var raw = bytes.loadLittleEndian(UInt64.self, at: 0)
            if signed && width < 8 && raw & (1 << (UInt64(width) * 8 - 1)) != 0 {
                raw |= ~((1 << (UInt64(width) * 8)) - 1)
            }
            return .integer(Int64(bitPattern: raw))
        case .other: return nil
        }
    }

    /// Sets `const volatile` global `name` before load, after checking the
    /// value against the global's BTF type.
    public func setParameter(_ name: String, to value: ParameterValue) throws(BPFError) {
        func fail(_ reason: String, _ fix: String) -> BPFError {
            BPFError(.setParameter, object: self.name, reason: reason, fix: fix)
        }
        guard !isLoaded else { throw fail("parameter '\(name)' was set after load", "Set parameters before loading") }
        let known = parameters
        guard let variable = known.first(where: { $0.name == name }) else {
            let list = known.isEmpty ? "it has none" : "it has " + known.map { "'\($0.name)' (\($0.type))" }.joined(separator: ", ")
            throw fail("the object has no parameter '\(name)'; \(list)",
                       "Remove '\(name)' from the manifest's [params] or the --set options, or declare it in the object as a `const volatile` global")
        }
        let encoded: [UInt8]
        switch (variable.type, value) {
        case (.boolean, .boolean(let flag)):
            encoded = [flag ? 1 : 0]
        case (.integer, .integer(let number)), (.enumeration, .integer(let number)):
            let range = variable.type.integerRange!
            guard range.contains(number) else {
                throw fail("parameter '\(name)' is a \(variable.type); \(number) is out of its range",
                           "Give an integer from \(range.lowerBound) to \(range.upperBound)")
            }
            encoded = (0..<variable.size).map { UInt8(truncatingIfNeeded: UInt64(bitPattern: number) >> (8 * UInt64($0))) }
        case (.characters(let capacity), .string(let text)):
            let utf8 = Array(text.utf8)
            guard utf8.count < capacity else {
                throw fail("parameter '\(name)' is a \(variable.type); \"\(text)\" has \(utf8.count) bytes",
                           "Give a string of at most \(capacity - 1) bytes")
            }
            encoded = utf8 + [UInt8](repeating: 0, count: capacity - utf8.count)
        default:
            let expected: String
            switch variable.type {
            case .boolean: expected = "true or false"
            case .integer, .enumeration:
                let range = variable.type.integerRange!
                expected = "an integer from \(range.lowerBound) to \(range.upperBound)"
            case .characters(let capacity): expected = "a string of at most \(capacity - 1) bytes"
            case .other(let kind): expected = "nothing: a \(kind) cannot be set from a manifest"
            }
            throw fail("parameter '\(name)' is a \(variable.type), not a \(value.kindName) like \(value)", "Give \(expected)")
        }
        guard let map = rodataMap else { throw fail("it has no .rodata map", "Declare parameters as `const volatile` globals") }
        var size = 0
        guard let current = bpf_map__initial_value(map, &size) else {
            throw fail("libbpf gives no initial value for its .rodata", "Rebuild the object")
        }
        var data = Array(UnsafeRawBufferPointer(start: current, count: size))
        data.replaceSubrange(variable.offset..<(variable.offset + variable.size), with: encoded)
        let rc = data.withUnsafeBytes { bpf_map__set_initial_value(map, $0.baseAddress, size) }
        if rc != 0 {
            throw BPFError(.setParameter, object: self.name, errno: Errno(rawValue: -rc),
                           reason: "libbpf refused the new .rodata for parameter '\(name)'")
        }
    }

    // MARK: Loading

    /// Verifies and loads every program and creates every map in the kernel.
    /// On a verifier rejection the error names the program and quotes the
    /// verifier; nothing stays loaded.
    public func load() throws(BPFError) {
        guard !isLoaded else { return }
        let progs = programs
        for program in progs {
            let buffer = UnsafeMutableBufferPointer<CChar>.allocate(capacity: Self.verifierLogSize)
            buffer[0] = 0
            logBuffers.append(buffer)
            bpf_program__set_log_buf(program.handle, buffer.baseAddress, buffer.count)
            bpf_program__set_log_level(program.handle, 0)
        }
        let mark = LibbpfLog.mark
        let rc = bpf_object__load(handle)
        defer {
            for program in progs { bpf_program__set_log_buf(program.handle, nil, 0) }
            freeLogBuffers()
        }
        guard rc != 0 else { isLoaded = true; return }
        let code = Errno(rawValue: -rc)
        let messages = LibbpfLog.messages(since: mark)
        // libbpf retries a failing program at log level 1, into its buffer only.
        for (program, buffer) in zip(progs, logBuffers) where buffer[0] != 0 {
            let log = String(cString: buffer.baseAddress!)
            throw BPFError(
                .load, object: name, program: program.name, errno: code,
                reason: "the kernel's verifier rejected the program",
                fix: "Fix the program where the verifier points; `mmpolicy verify --log` prints the end of the verifier log",
                verifier: VerifierRejection(log: log, tailLines: 40), libbpfMessages: messages)
        }
        let failing = messages.compactMap(Self.programName(in:)).first
        var reason = "libbpf could not load it"
        var fix: String? = nil
        if code == .permissionDenied || code == .notPermitted {
            reason = "the kernel refused the load"
            fix = "Run as root (loading BPF needs CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN)"
        }
        if let relo = messages.first(where: { $0.contains("relo") && $0.contains("failed") }) {
            reason = "a CO-RE relocation failed against this kernel (\(relo))"
            fix = "The kernel lacks a type or field the program reads; guard it with bpf_core_field_exists()"
        }
        throw BPFError(.load, object: name, program: failing, errno: code, reason: reason, fix: fix, libbpfMessages: messages)
    }

    private func freeLogBuffers() {
        for buffer in logBuffers { buffer.deallocate() }
        logBuffers.removeAll()
    }

    /// "libbpf: prog 'x': ..." -> x
    static func programName(in message: String) -> String? {
        guard let start = message.firstRange(of: "prog '") else { return nil }
        let rest = message[start.upperBound...]
        guard let end = rest.firstIndex(of: "'") else { return nil }
        return String(rest[..<end])
    }
}

extension ParameterValue {
    var kindName: String {
        switch self {
        case .integer: return "integer"
        case .boolean: return "boolean"
        case .string: return "string"
        }
    }
}
