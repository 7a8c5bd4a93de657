/// The madvise(2) advice tiering gives another process's memory through
/// process_madvise(2): the three a kernel accepts for a remote process
/// (besides MADV_COLLAPSE) since Linux 5.10.
///
/// Exists so that a policy's action can name only advice the kernel takes
/// from outside; RANDOM, SEQUENTIAL, MERGEABLE and the rest give EINVAL for
/// a remote process.
public enum MemoryAdvice: Int32, Sendable, CaseIterable, CustomStringConvertible {
    /// MADV_COLD (20): deactivate the pages (clear Referenced, move them to
    /// the inactive list) so reclaim takes them first. Moves nothing by
    /// itself: measured here, it swapped out no page.
    case cold = 20
    /// MADV_PAGEOUT (21): reclaim the pages now; anonymous ones go to swap
    /// (zram here). Pages mapped by more than one process (shared, or COW
    /// after fork) are left alone.
    case pageOut = 21
    /// MADV_WILLNEED (3): read swapped-out pages back. They land in the swap
    /// cache, not in the page tables: VmSwap does not fall until the process
    /// touches them, and that access is then a minor fault instead of a
    /// major one. zram keeps its copy even then (measured: 16 MiB read back
    /// and touched, still 16 MiB stored), until the page is written or swap
    /// is more than half full. Asynchronous in general; on zram the reads
    /// are done when the call returns.
    case willNeed = 3

    public var description: String {
        switch self {
        case .cold: "MADV_COLD"
        case .pageOut: "MADV_PAGEOUT"
        case .willNeed: "MADV_WILLNEED"
        }
    }
}
