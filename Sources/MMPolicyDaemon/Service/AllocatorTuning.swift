import CLibBPF

/// Keeps the daemon's resident memory close to what it actually uses.
///
/// Loading a policy makes libbpf read and parse the kernel's BTF (several
/// MiB) and then free it. glibc's malloc raises its mmap threshold to the
/// size of the largest mmapped block freed, so after the first load such
/// buffers come from the heap, and freed heap memory stays resident
/// (locked, too, under the daemon's mlockall). A fixed threshold keeps large
/// blocks in their own mappings, returned to the kernel on free; a trim after
/// each load or unload gives back what smaller blocks left behind.
enum AllocatorTuning {
    /// Fixes malloc's thresholds (call once, before anything allocates much).
    static func configure() {
        _ = mallopt(M_MMAP_THRESHOLD, 128 * 1024)
        _ = mallopt(M_TRIM_THRESHOLD, 512 * 1024)
        // Two arenas are plenty for a daemon with a handful of threads; each
        // extra arena keeps its own free memory.
        _ = mallopt(M_ARENA_MAX, 2)
    }

    /// Returns freed heap memory to the kernel (after a load or an unload).
    static func releaseFreedMemory() {
        _ = malloc_trim(0)
    }
}
