import ArgumentParser
import BPFKit
import MMPolicyCore
import MMPolicyDaemon

/// `mmpolicy tier`: the slow tier tiering policies move memory to.
struct TierCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tier",
        abstract: "The slow memory tier (swap) tiering policies move memory to: show it, set up zram swap, tear it down.",
        subcommands: [TierStatusCommand.self, SetupZramCommand.self, TeardownZramCommand.self])
}

/// `mmpolicy tier setup-zram SIZE`.
struct SetupZramCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "setup-zram",
        abstract: "Ask the daemon to set up zram swap of SIZE, journaled: it stays, across daemon restarts, until `mmpolicy tier teardown-zram`.",
        discussion: """
            The daemon adds a zram device of its own (/sys/class/zram-control/hot_add) where the kernel can, \
            else takes the first free one (disksize 0, not swap); --device names one. It journals the device before \
            changing it, selects the algorithm, sets the size, writes a swap header and swaps it on. It is the \
            operator's request, not a policy's knob: stopping, killing or restarting the daemon leaves it on, and \
            the journal is how a restarted daemon knows it set it up. teardown-zram undoes exactly this: swapoff, \
            then the device removed (if mmpolicy added it) or reset. See docs/kinds/tiering.md.
            """)

    @Argument(help: "The swap device's size: 512M, 1G, 4GiB (binary units; at most the machine's memory).") var size: String
    @Option(help: "Compression algorithm (the device's comp_algorithm lists what the kernel offers).")
    var algorithm = ZramSwapRequest.defaultAlgorithm
    @Option(help: "Swap priority, 0 to 32767: higher is used first (the default puts zram before disk swap).")
    var priority = ZramSwapRequest.defaultPriority
    @Option(help: "An existing free zram device to use (/dev/zramN), or 'new' to always add one (default: add one where the kernel can, else the first free one).")
    var device: String?
    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var connection: DaemonConnectionOptions

    func run() throws {
        guard let bytes = ByteSize(parsing: size) else {
            throw CommandError(ZramError(.sizeNotUnderstood(size), path: "zram size").description)
        }
        let response = try connection.send(ControlRequest(command: .setupZram, zram: ZramRequest(
            sizeBytes: bytes.bytes, algorithm: algorithm, priority: priority, device: device)))
        guard let zram = response.zram else { throw CommandError("the daemon answered without the device it set up.") }
        if json { return try printJSON(zram) }
        print("set up \(zram.device) (\(zram.hotAdded ? "added by mmpolicy" : "an existing device")): \(ByteSize(bytes: zram.sizeBytes)) of swap, \(zram.algorithm), priority \(zram.priority). It stays across daemon restarts; `mmpolicy tier teardown-zram \(zram.device)` undoes it.")
    }
}

/// `mmpolicy tier teardown-zram [DEVICE]`.
struct TeardownZramCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "teardown-zram",
        abstract: "Ask the daemon to tear down zram swap it set up with setup-zram: swapoff, then remove the device (if mmpolicy added it) or reset it.",
        discussion: """
            Refused for a device mmpolicy did not set up, for one a policy's manifest set up ([tiering] setup_zram: it \
            goes when that policy is unloaded), and for the last active swap area while a tiering policy is loaded \
            (the policy relies on it: unload it first, or set up other swap first). swapoff brings every page the \
            device holds back into memory first, so it can take seconds, and fails if memory is short.
            """)

    @Argument(help: "The device (/dev/zramN); default: the only one set up with setup-zram.") var device: String?
    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var connection: DaemonConnectionOptions

    func run() throws {
        let response = try connection.send(ControlRequest(command: .teardownZram, zram: ZramRequest(device: device)))
        guard let zram = response.zram else { throw CommandError("the daemon answered without the device it tore down.") }
        if json { return try printJSON(zram) }
        print("tore down \(zram.device): \(zram.outcome ?? "done")")
    }
}

/// `mmpolicy tier status`.
struct TierStatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show the slow tier: every active swap area (size, used, priority; zram: stored, compressed, compression ratio, memory) and the zram devices mmpolicy set up, for whom.")

    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var connection: DaemonConnectionOptions

    func run() throws {
        let response = try connection.send(ControlRequest(command: .tierStatus))
        guard let tier = response.tier else { throw CommandError("the daemon answered without the slow tier.") }
        if json { return try printJSON(tier) }
        print(Self.render(tier))
    }

    static func render(_ tier: TierStatus) -> String {
        var lines: [String] = []
        let total = tier.areas.reduce(UInt64(0)) { $0 + $1.sizeBytes }, used = tier.areas.reduce(UInt64(0)) { $0 + $1.usedBytes }
        if tier.areas.isEmpty {
            lines.append("no swap area is active: tiering policies cannot load (`mmpolicy tier setup-zram SIZE` sets one up)")
        } else {
            lines.append("slow tier: \(tier.areas.count) swap area\(tier.areas.count == 1 ? "" : "s"), \(ByteSize(bytes: total)), \(ByteSize(bytes: used)) used")
            let rows = tier.areas.map { area -> [String] in
                let zram = area.zram
                return [area.path, ByteSize(bytes: area.sizeBytes).description, ByteSize(bytes: area.usedBytes).description, String(area.priority),
                        zram?.algorithm ?? "-", zram.map { ByteSize(bytes: $0.storedBytes).description } ?? "-",
                        zram?.compressionRatio.map { decimalString($0, places: 2) + "x" } ?? "-",
                        zram.map { ByteSize(bytes: $0.memoryBytes).description } ?? "-", area.setUpFor.map(owner) ?? "-"]
            }
            lines.append(table(["DEVICE", "SIZE", "USED", "PRIO", "ALGORITHM", "STORED", "COMPRESSION", "MEMORY", "SET UP BY MMPOLICY FOR"], rows))
        }
        if !tier.relyingPolicies.isEmpty { lines.append("tiering policies relying on it: " + tier.relyingPolicies.joined(separator: ", ")) }
        for zram in tier.zram where !zram.active {
            lines.append("  \(zram.device), set up by mmpolicy for \(owner(zram.owner)), is NOT active (swapped off or reset by someone else); teardown forgets it")
        }
        for problem in tier.unreadable ?? [] { lines.append("  unreadable: \(problem)") }
        return lines.joined(separator: "\n")
    }

    /// "the operator (setup-zram)" or "policy NAME".
    static func owner(_ owner: String) -> String {
        owner == KnobJournal.operatorOwner ? "the operator (setup-zram)" : "policy \(owner)"
    }
}
