import BPFKit
import CMMPolicyABI

/// A policy object's ops table, read from its ELF and BTF: which kind and
/// ABI it was built for, its name, and which program serves each callback.
///
/// The table is data in a section of mmpolicy's own (`.mmpolicy.ops`); each
/// callback slot holds a relocation naming a program, the way libbpf reads
/// `.struct_ops`. Slot names come from the table's BTF struct, so a slot's
/// meaning is defined once, in the C header.
public struct OpsTable: Sendable, Equatable {
    public struct Callback: Sendable, Equatable {
        public var slot: String
        public var program: String
    }

    public var abiVersion: UInt32
    public var kind: PolicyKind
    /// The `.name` the table gives itself.
    public var name: String
    /// The BTF variable holding the table.
    public var variable: String
    public var callbacks: [Callback]

    public func program(for slot: String) -> String? { callbacks.first { $0.slot == slot }?.program }

    /// Reads and checks the table of `object`: exactly one table, this ABI
    /// version, a kind in `kinds`, every required callback bound to a
    /// program of the object of the slot's type (`syscall`).
    public init(reading object: BPFObject, kinds: KindRegistry) throws(OpsTableError) {
        let elf = object.elf
        func fail(_ reason: String, _ fix: String, slot: String? = nil, program: String? = nil) -> OpsTableError {
            OpsTableError(object: object.name, slot: slot, program: program, reason: reason, fix: fix)
        }
        let header = elf.section(named: MMPOLICY_HEADER_SECTION)
        let first = kinds.definitions.first
        let example = (kind: first?.kind.rawValue ?? "KIND", slot: first?.callbacks.first?.name ?? "CALLBACK")
        guard let opsSection = elf.section(named: MMPOLICY_OPS_SECTION) else {
            throw fail("it has no mmpolicy ops table (no ELF section \(MMPOLICY_OPS_SECTION))",
                       "Declare one with `MMPOLICY_OPS(\(example.kind)) = { .\(example.slot) = (void *)my_prog, .name = \"...\" };` after including mmpolicy/common.bpf.h")
        }
        guard let header, header.data.count >= MemoryLayout<mmpolicy_header>.size else {
            throw fail("its ops table has no header section \(MMPOLICY_HEADER_SECTION) with the ABI version",
                       "Declare the table with the MMPOLICY_OPS(kind) macro, which writes the header")
        }
        abiVersion = header.data.loadLittleEndian(UInt32.self, at: 0)
        let kindID = header.data.loadLittleEndian(UInt32.self, at: 4)
        guard abiVersion == mmpolicyABIVersion else {
            throw fail("it was built for mmpolicy ABI version \(abiVersion), and this mmpolicy loads version \(mmpolicyABIVersion)",
                       "Rebuild the object against this mmpolicy's headers (bpf-programs/include/mmpolicy)")
        }
        guard let definition = kinds.definition(abiID: kindID) else {
            let known = kinds.definitions.map { "\($0.kind) (\($0.abiID))" }.joined(separator: ", ")
            throw fail("its header names policy kind \(kindID), which this mmpolicy does not run (known kinds: \(known.isEmpty ? "none" : known))",
                       "Use MMPOLICY_OPS with one of: \(kinds.kinds.map(\.rawValue).joined(separator: ", "))")
        }
        let kind = definition.kind
        let slots = definition.callbacks
        self.kind = kind
        guard let btf = object.btfVariables(in: MMPOLICY_OPS_SECTION) else {
            throw fail("it carries no BTF for its ops table", "Build it with `-g` so clang emits BTF")
        }
        guard btf.count == 1 else {
            throw fail("its section \(MMPOLICY_OPS_SECTION) holds \(btf.count) tables (\(btf.map { "'\($0.name)'" }.joined(separator: ", "))); an object has exactly one",
                       "Keep one MMPOLICY_OPS(...) table and put other policies in objects of their own")
        }
        let table = btf[0]
        variable = table.name
        guard table.structName == definition.opsStructName else {
            throw fail("its ops table '\(table.name)' is a struct \(table.structName ?? "?") but its header says kind \(kind.rawValue), whose table is struct \(definition.opsStructName)",
                       "Declare the table with MMPOLICY_OPS(\(kind.rawValue))")
        }
        let members = table.members
        let relocations = elf.relocations(for: opsSection)
        var bound: [Callback] = []
        for relocation in relocations {
            let offset = Int(relocation.offset) - table.offset
            guard let member = members.first(where: { $0.offset == offset }) else { continue }
            let symbol = relocation.symbol.name
            guard let known = slots.first(where: { $0.name == member.name }) else {
                throw fail("its ops table binds slot '\(member.name)', which a \(kind.rawValue) policy does not have (slots: \(slots.map(\.name).joined(separator: ", ")))",
                           "Remove the slot or rebuild against this mmpolicy's headers", slot: member.name, program: symbol)
            }
            guard let program = object.program(named: symbol) else {
                throw fail("slot '\(known.name)' points at '\(symbol)', which is not a BPF program of the object (a helper function or a variable)",
                           "Bind the slot to a function marked SEC(\"syscall\")", slot: known.name, program: symbol)
            }
            guard program.type == known.programType else {
                throw fail("slot '\(known.name)' is bound to program '\(symbol)' in section '\(program.sectionName)' (a \(program.type) program); callbacks must be SEC(\"\(known.programType)\") programs, which the daemon runs with BPF_PROG_RUN",
                           "Mark '\(symbol)' SEC(\"\(known.programType)\"), and keep tracepoint programs as sensors outside the ops table", slot: known.name, program: symbol)
            }
            bound.append(Callback(slot: known.name, program: symbol))
        }
        for slot in slots where slot.required && !bound.contains(where: { $0.slot == slot.name }) {
            throw fail("its ops table '\(table.name)' does not bind the required callback '\(slot.name)'",
                       "Set `.\(slot.name) = (void *)your_program` in MMPOLICY_OPS(\(kind.rawValue))", slot: slot.name)
        }
        callbacks = bound.sorted { $0.slot < $1.slot }
        if let nameMember = members.first(where: { $0.name == "name" }) {
            let bytes = opsSection.data.dropFirst(table.offset + nameMember.offset).prefix(Int(MMPOLICY_NAME_LEN))
            name = String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
        } else {
            name = ""
        }
    }
}

/// Why an object is not a usable policy: which slot, which program, what to change.
public struct OpsTableError: Error, Sendable, CustomStringConvertible {
    public var object: String
    public var slot: String?
    public var program: String?
    public var reason: String
    public var fix: String

    public init(object: String, slot: String?, program: String?, reason: String, fix: String) {
        self.object = object
        self.slot = slot
        self.program = program
        self.reason = reason
        self.fix = fix
    }

    public var description: String { "'\(object)' is not a usable mmpolicy policy: \(reason). \(fix)." }
}
