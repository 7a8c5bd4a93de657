import CLibBPF
import SystemPackage

/// One map of a ``BPFObject``: its shape before load, its contents after.
///
/// A view: the file descriptor belongs to the object. Keys and values are raw
/// bytes; the generic accessors take any `BitwiseCopyable` type whose size
/// matches the map's, and throw if it does not.
public struct BPFMap {
    public let object: BPFObject
    let handle: OpaquePointer

    init(object: BPFObject, handle: OpaquePointer) {
        self.object = object
        self.handle = handle
    }

    public var name: String { String(cString: bpf_map__name(handle)) }
    public var type: String { libbpf_bpf_map_type_str(bpf_map__type(handle)).map { String(cString: $0) } ?? "unknown" }
    public var keySize: Int { Int(bpf_map__key_size(handle)) }
    public var valueSize: Int { Int(bpf_map__value_size(handle)) }
    public var maxEntries: Int { Int(bpf_map__max_entries(handle)) }
    /// Maps libbpf makes for global data (.rodata, .data, .bss, .kconfig).
    public var isInternal: Bool { bpf_map__is_internal(handle) }
    public var fd: Int32? {
        let fd = bpf_map__fd(handle)
        return fd >= 0 ? fd : nil
    }

    /// Memory the kernel charges for the map (`memlock` in its fdinfo) once
    /// loaded; before that, keys and values times entries.
    public var memoryBytes: Int {
        if let fd, let charged = Self.chargedBytes(fd: fd) { return charged }
        return (keySize + valueSize) * maxEntries
    }

    /// The `memlock:` figure of the map behind `fd` in /proc/self/fdinfo:
    /// the memory the kernel charges for it (its real usage since Linux 6.4).
    /// nil if the descriptor is not open or its fdinfo has no such line.
    public static func chargedBytes(fd: Int32) -> Int? {
        guard let text = try? String(contentsOfProcFile: "/proc/self/fdinfo/\(fd)") else { return nil }
        return chargedBytes(fdinfo: text)
    }

    /// The `memlock:` value of a map's fdinfo text.
    public static func chargedBytes(fdinfo text: String) -> Int? {
        for line in text.split(separator: "\n") where line.hasPrefix("memlock:") {
            if let value = Int(String(line.dropFirst(8)).trimmingCharacters(in: " \t")) { return value }
        }
        return nil
    }

    public func lookup<Key: BitwiseCopyable, Value: BitwiseCopyable>(_ key: Key, as: Value.Type = Value.self) throws(BPFError) -> Value? {
        let fd = try loadedFD(.mapLookup)
        try checkSizes(Key.self, Value.self, .mapLookup)
        var key = key
        let value = UnsafeMutableRawPointer.allocate(byteCount: MemoryLayout<Value>.size, alignment: MemoryLayout<Value>.alignment)
        defer { value.deallocate() }
        let rc = bpf_map_lookup_elem(fd, &key, value)
        if rc == -Errno.noSuchFileOrDirectory.rawValue { return nil }
        if rc != 0 { throw failure(.mapLookup, rc) }
        return value.load(as: Value.self)
    }

    public func update<Key: BitwiseCopyable, Value: BitwiseCopyable>(_ key: Key, _ value: Value) throws(BPFError) {
        let fd = try loadedFD(.mapUpdate)
        try checkSizes(Key.self, Value.self, .mapUpdate)
        var key = key, value = value
        let rc = bpf_map_update_elem(fd, &key, &value, UInt64(BPF_ANY))
        if rc != 0 { throw failure(.mapUpdate, rc) }
    }

    /// Deletes `key`; returns false if it was not there.
    @discardableResult
    public func delete<Key: BitwiseCopyable>(_ key: Key) throws(BPFError) -> Bool {
        let fd = try loadedFD(.mapDelete)
        guard MemoryLayout<Key>.size == keySize else { throw sizeMismatch("key", MemoryLayout<Key>.size, keySize, .mapDelete) }
        var key = key
        let rc = bpf_map_delete_elem(fd, &key)
        if rc == -Errno.noSuchFileOrDirectory.rawValue { return false }
        if rc != 0 { throw failure(.mapDelete, rc) }
        return true
    }

    /// Every key in the map (a snapshot; concurrent updates may be missed).
    public func keys<Key: BitwiseCopyable>(as: Key.Type = Key.self) throws(BPFError) -> [Key] {
        let fd = try loadedFD(.mapLookup)
        guard MemoryLayout<Key>.size == keySize else { throw sizeMismatch("key", MemoryLayout<Key>.size, keySize, .mapLookup) }
        var result: [Key] = []
        let next = UnsafeMutableRawPointer.allocate(byteCount: keySize, alignment: 8)
        let current = UnsafeMutableRawPointer.allocate(byteCount: keySize, alignment: 8)
        defer { next.deallocate(); current.deallocate() }
        var previous: UnsafeMutableRawPointer? = nil
        while true {
            let rc = bpf_map_get_next_key(fd, previous, next)
            if rc == -Errno.noSuchFileOrDirectory.rawValue { return result }
            if rc != 0 { throw failure(.mapLookup, rc) }
            result.append(next.load(as: Key.self))
            current.copyMemory(from: next, byteCount: keySize)
            previous = current
        }
    }

    /// Before the object is loaded: makes this map the already-loaded map
    /// behind `fd` (libbpf's bpf_map__reuse_fd), so two objects share one
    /// map. The kernel checks that type, key and value sizes, entries and
    /// flags match, and refuses the reuse otherwise. The descriptor is
    /// duplicated: the caller keeps its own.
    public func reuse(fd: Int32) throws(BPFError) {
        let rc = bpf_map__reuse_fd(handle, fd)
        if rc != 0 {
            throw BPFError(.reuse, object: object.name, map: name, errno: Errno(rawValue: -rc),
                           reason: "the shared map cannot take this object's place (its type, key or value size, entries or flags differ, or the object is already loaded)",
                           fix: "Declare the map exactly as the kind's BPF header does (do not redefine it), and rebuild the object")
        }
    }

    public func pin(at path: String) throws(BPFError) {
        let rc = bpf_map__pin(handle, path)
        if rc != 0 {
            throw BPFError(.pin, object: object.name, map: name, errno: Errno(rawValue: -rc), reason: "cannot pin at '\(path)'",
                           fix: "Mount bpffs (`mount -t bpf bpf /sys/fs/bpf`) and check the directory exists")
        }
    }

    public func unpin(at path: String) throws(BPFError) {
        let rc = bpf_map__unpin(handle, path)
        if rc != 0 { throw BPFError(.unpin, object: object.name, map: name, errno: Errno(rawValue: -rc), reason: "cannot unpin '\(path)'") }
    }

    private func loadedFD(_ operation: BPFError.Operation) throws(BPFError) -> Int32 {
        guard let fd else {
            throw BPFError(operation, object: object.name, map: name, reason: "the object is not loaded", fix: "Call load() first")
        }
        return fd
    }

    private func checkSizes<Key, Value>(_: Key.Type, _: Value.Type, _ operation: BPFError.Operation) throws(BPFError) {
        if MemoryLayout<Key>.size != keySize { throw sizeMismatch("key", MemoryLayout<Key>.size, keySize, operation) }
        if MemoryLayout<Value>.size != valueSize { throw sizeMismatch("value", MemoryLayout<Value>.size, valueSize, operation) }
    }

    private func sizeMismatch(_ what: String, _ given: Int, _ expected: Int, _ operation: BPFError.Operation) -> BPFError {
        BPFError(operation, object: object.name, map: name, reason: "a \(given)-byte \(what) was given for \(expected)-byte \(what)s",
                 fix: "Use the Swift type that mirrors the map's C \(what) type")
    }

    private func failure(_ operation: BPFError.Operation, _ rc: Int32) -> BPFError {
        BPFError(operation, object: object.name, map: name, errno: Errno(rawValue: -rc), reason: "the kernel refused the \(operation.rawValue)")
    }
}

extension String {
    /// Reads a small /proc or /sys file (their size is 0 in stat, so read to EOF).
    public init(contentsOfProcFile path: String) throws {
        let fd = try FileDescriptor.open(FilePath(path), .readOnly)
        let bytes = try fd.closeAfter { try BPFObject.readAll(fd) }
        self = String(decoding: bytes, as: UTF8.self)
    }
}
