import CLibBPF
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// A reader of one `BPF_MAP_TYPE_RINGBUF` map of a loaded ``BPFObject``.
///
/// Ring buffers are how BPF programs push events to user space without being
/// polled: the kernel wakes the reader when a record is submitted. This type
/// owns libbpf's `struct ring_buffer` (and with it the epoll instance libbpf
/// makes) and frees it when released; it keeps the map's object alive, since
/// the map must outlive its reader. Records come out as their raw bytes, or
/// as a fixed-size type mirroring the C record.
///
/// Not thread-safe: use one reader from one thread at a time.
public final class BPFRingBuffer {
    public let map: BPFMap
    private let handle: OpaquePointer
    /// Where libbpf's callback, which cannot capture Swift context, puts the
    /// records it is handed; reached through the callback's `ctx` argument.
    private let sink: RecordSink

    /// Builds a reader over `map`, which must be a ring buffer of a loaded object.
    public init(map: BPFMap) throws(BPFError) {
        guard map.type == "ringbuf" else {
            throw BPFError(.open, object: map.object.name, map: map.name,
                           reason: "it is a \(map.type) map, not a ring buffer",
                           fix: "Give the map declared with __uint(type, BPF_MAP_TYPE_RINGBUF)")
        }
        guard let fd = map.fd else {
            throw BPFError(.open, object: map.object.name, map: map.name,
                           reason: "the object is not loaded, so the ring buffer does not exist yet", fix: "Call load() first")
        }
        let sink = RecordSink()
        let mark = LibbpfLog.mark
        let callback: ring_buffer_sample_fn = { context, data, size in
            guard let context, let data else { return 0 }
            let sink = Unmanaged<RecordSink>.fromOpaque(context).takeUnretainedValue()
            sink.records.append(Array(UnsafeRawBufferPointer(start: data, count: size)))
            return 0
        }
        guard let handle = ring_buffer__new(fd, callback, Unmanaged.passUnretained(sink).toOpaque(), nil) else {
            throw BPFError(.open, object: map.object.name, map: map.name, errno: Errno(rawValue: errno),
                           reason: "libbpf cannot set up a reader for the ring buffer",
                           libbpfMessages: LibbpfLog.messages(since: mark))
        }
        self.map = map
        self.handle = handle
        self.sink = sink
    }

    deinit { ring_buffer__free(handle) }

    /// An epoll file descriptor that turns readable when records are waiting,
    /// for a caller's own poll loop; then call ``drain()``. Owned by this reader.
    public var epollFD: Int32 { ring_buffer__epoll_fd(handle) }

    /// Waits up to `timeoutMs` milliseconds (-1: forever) for records and
    /// returns every record waiting then, oldest first; [] on timeout or when
    /// a signal interrupted the wait.
    public func poll(timeoutMs: Int32) throws(BPFError) -> [[UInt8]] {
        let rc = ring_buffer__poll(handle, timeoutMs)
        return try collect(rc, what: "waiting for records")
    }

    /// Returns every record waiting now, oldest first, without blocking.
    public func drain() throws(BPFError) -> [[UInt8]] {
        let rc = ring_buffer__consume(handle)
        return try collect(rc, what: "consuming records")
    }

    /// ``drain()``, each record read as a `T` (the Swift mirror of the C
    /// record). Throws if any record's size is not `T`'s; the records have then
    /// been consumed and are lost, since a size mismatch means the two sides
    /// disagree on the record layout.
    public func drain<T: BitwiseCopyable>(as: T.Type) throws(BPFError) -> [T] {
        let records = try drain()
        let size = MemoryLayout<T>.size
        if let wrong = records.first(where: { $0.count != size }) {
            throw BPFError(.readRingBuffer, object: map.object.name, map: map.name,
                           reason: "a \(wrong.count)-byte record was read as a \(size)-byte \(T.self)",
                           fix: "Use the Swift type that mirrors the C record the program submits")
        }
        return records.map { record in record.withUnsafeBytes { $0.loadUnaligned(as: T.self) } }
    }

    private func collect(_ rc: Int32, what: String) throws(BPFError) -> [[UInt8]] {
        let records = sink.records
        sink.records = []
        if rc < 0 && rc != -EINTR {
            throw BPFError(.readRingBuffer, object: map.object.name, map: map.name, errno: Errno(rawValue: -rc),
                           reason: "libbpf failed while \(what)")
        }
        return records
    }
}

/// The records one poll or drain of a ``BPFRingBuffer`` collected.
private final class RecordSink {
    var records: [[UInt8]] = []
}
