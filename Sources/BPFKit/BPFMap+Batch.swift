import CLibBPF
import SystemPackage

extension BPFMap {
    /// Every entry of a hash map (key and value), read with
    /// BPF_MAP_LOOKUP_BATCH, up to `batchSize` entries per system call:
    /// a full 65,536-entry map in a few dozen calls instead of two per
    /// entry (``keys(as:)`` then ``lookup(_:as:)``). Each batch is a
    /// consistent read of whole hash buckets; entries added or deleted
    /// meanwhile may be missed or seen, none twice.
    @inlinable
    public func entries<Key: BitwiseCopyable, Value: BitwiseCopyable>(
        as: (Key, Value).Type = (Key, Value).self, batchSize: Int = 4096
    ) throws(BPFError) -> [(key: Key, value: Value)] {
        guard let fd else {
            throw BPFError(.mapLookup, object: object.name, map: name, reason: "the object is not loaded", fix: "Call load() first")
        }
        for (what, given, expected) in [("key", MemoryLayout<Key>.size, keySize), ("value", MemoryLayout<Value>.size, valueSize)] where given != expected {
            throw BPFError(.mapLookup, object: object.name, map: name, reason: "a \(given)-byte \(what) was given for \(expected)-byte \(what)s",
                           fix: "Use the Swift type that mirrors the map's C \(what) type")
        }
        var capacity = max(batchSize, 1)
        var result: [(key: Key, value: Value)] = []
        // The position between calls: a bucket index for hash maps, at most a key's size.
        let cursor = UnsafeMutableRawPointer.allocate(byteCount: max(keySize, 8), alignment: 8)
        defer { cursor.deallocate() }
        var started = false
        while true {
            let keys = UnsafeMutableRawPointer.allocate(byteCount: keySize * capacity, alignment: 8)
            let values = UnsafeMutableRawPointer.allocate(byteCount: valueSize * capacity, alignment: 8)
            defer { keys.deallocate(); values.deallocate() }
            var count = UInt32(capacity)
            var opts = bpf_map_batch_opts()
            opts.sz = MemoryLayout<bpf_map_batch_opts>.size
            let rc = bpf_map_lookup_batch(fd, started ? cursor : nil, cursor, keys, values, &count, &opts)
            if rc != 0 && rc != -Errno.noSuchFileOrDirectory.rawValue {
                // One bucket holds more entries than fit: try again with room for them.
                if rc == -Errno.noSpace.rawValue && capacity < maxEntries { capacity *= 2; continue }
                throw BPFError(.mapLookup, object: object.name, map: name, errno: Errno(rawValue: -rc),
                               reason: "the kernel refused a batch lookup",
                               fix: rc == -Errno.invalidArgument.rawValue ? "Batch lookups need a hash or array map (Linux 5.6 or later)" : nil)
            }
            for index in 0..<Int(count) {
                result.append((keys.loadUnaligned(fromByteOffset: index * keySize, as: Key.self),
                               values.loadUnaligned(fromByteOffset: index * valueSize, as: Value.self)))
            }
            // ENOENT: that was the last batch.
            if rc != 0 { return result }
            started = true
        }
    }
}

extension BPFMap {
    /// Deletes `keys` with BPF_MAP_DELETE_BATCH (one system call for many
    /// keys); keys already gone are skipped. Returns how many it deleted.
    @discardableResult
    public func delete<Key: BitwiseCopyable>(batch keys: [Key]) throws(BPFError) -> Int {
        guard let fd else {
            throw BPFError(.mapDelete, object: object.name, map: name, reason: "the object is not loaded", fix: "Call load() first")
        }
        guard MemoryLayout<Key>.size == keySize else {
            throw BPFError(.mapDelete, object: object.name, map: name, reason: "a \(MemoryLayout<Key>.size)-byte key was given for \(keySize)-byte keys",
                           fix: "Use the Swift type that mirrors the map's C key type")
        }
        var deleted = 0, next = 0
        var opts = bpf_map_batch_opts()
        opts.sz = MemoryLayout<bpf_map_batch_opts>.size
        while next < keys.count {
            var count = UInt32(keys.count - next)
            let rc = keys.withUnsafeBytes { bytes in
                bpf_map_delete_batch(fd, UnsafeMutableRawPointer(mutating: bytes.baseAddress! + next * keySize), &count, &opts)
            }
            deleted += Int(count)
            next += Int(count)
            if rc == 0 { break }
            // ENOENT: the key at `next` is gone already (deleted or evicted meanwhile).
            guard rc == -Errno.noSuchFileOrDirectory.rawValue else {
                throw BPFError(.mapDelete, object: object.name, map: name, errno: Errno(rawValue: -rc), reason: "the kernel refused a batch delete")
            }
            next += 1
        }
        return deleted
    }
}
