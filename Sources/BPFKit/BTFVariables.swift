import CLibBPF

/// The type of a BPF global variable, as its BTF describes it after stripping
/// `const`, `volatile` and typedefs: what a parameter value must fit.
public enum GlobalType: Sendable, Equatable, CustomStringConvertible {
    case integer(bytes: Int, signed: Bool)
    case boolean
    case enumeration(bytes: Int, signed: Bool)
    case characters(capacity: Int)
    case other(String)

    public var description: String {
        switch self {
        case .integer(let bytes, let signed): return (signed ? "s" : "u") + String(bytes * 8)
        case .boolean: return "bool"
        case .enumeration(let bytes, _): return "enum(\(bytes * 8) bit)"
        case .characters(let capacity): return "char[\(capacity)]"
        case .other(let kind): return kind
        }
    }

    /// The range of integers the type holds, for integer-like types.
    var integerRange: ClosedRange<Int64>? {
        switch self {
        case .integer(let bytes, let signed), .enumeration(let bytes, let signed):
            if bytes >= 8 { return signed ? Int64.min...Int64.max : 0...Int64.max }
            let bits = Int64(bytes * 8)
            return signed ? -(1 << (bits - 1))...((1 << (bits - 1)) - 1) : 0...((1 << bits) - 1)
        default: return nil
        }
    }
}

/// A global variable of a BPF object: where it lives in its data section and
/// what type it has. `const volatile` globals (section `.rodata`) are a
/// policy's parameters.
public struct GlobalVariable: Sendable, Equatable {
    public var name: String
    public var section: String
    public var offset: Int
    public var size: Int
    public var type: GlobalType
}

/// Reads variables and struct members out of an object's BTF.
struct BTFReader {
    let btf: OpaquePointer

    func type(_ id: UInt32) -> UnsafePointer<btf_type>? { btf__type_by_id(btf, id) }

    func name(of t: UnsafePointer<btf_type>) -> String {
        btf__name_by_offset(btf, t.pointee.name_off).map { String(cString: $0) } ?? ""
    }

    /// The variables BTF places in data section `section`: (var type, offset, size).
    func datasec(_ section: String) -> [(variable: UnsafePointer<btf_type>, offset: Int, size: Int)] {
        let id = btf__find_by_name_kind(btf, section, UInt32(15) /* BTF_KIND_DATASEC */)
        guard id > 0, let sec = type(UInt32(id)), let infos = btf_var_secinfos(sec) else { return [] }
        return (0..<Int(btf_vlen(sec))).compactMap { i in
            guard let v = type(infos[i].type), btf_is_var(v) else { return nil }
            return (v, Int(infos[i].offset), Int(infos[i].size))
        }
    }

    /// The variables of data section `section` (e.g. ".rodata"), in offset order.
    func variables(in section: String) -> [GlobalVariable] {
        datasec(section).map { v, offset, size in
            GlobalVariable(name: name(of: v), section: section, offset: offset, size: size, type: resolve(v.pointee.type))
        }.sorted { $0.offset < $1.offset }
    }

    /// The named fields of the struct `typeID` resolves to, with their byte offsets.
    func members(ofStruct typeID: UInt32) -> [(name: String, offset: Int, type: GlobalType)] {
        let resolved = btf__resolve_type(btf, typeID)
        guard resolved > 0, let t = type(UInt32(resolved)), btf_is_struct(t), let members = btf_members(t) else { return [] }
        return (0..<Int(btf_vlen(t))).map { i in
            let m = members[i]
            let memberName = btf__name_by_offset(btf, m.name_off).map { String(cString: $0) } ?? ""
            return (memberName, Int(btf_member_bit_offset(t, UInt32(i)) / 8), resolve(m.type))
        }
    }

    /// The type of variable `variable` as its struct name, if it is a struct.
    func structName(ofVariableType typeID: UInt32) -> String? {
        let resolved = btf__resolve_type(btf, typeID)
        guard resolved > 0, let t = type(UInt32(resolved)), btf_is_struct(t) else { return nil }
        return name(of: t)
    }

    func resolve(_ typeID: UInt32) -> GlobalType {
        let resolved = btf__resolve_type(btf, typeID)
        guard resolved > 0, let t = type(UInt32(resolved)) else { return .other("void") }
        if btf_is_int(t) {
            let encoding = Int32(btf_int_encoding(t))
            if encoding & BTF_INT_BOOL != 0 { return .boolean }
            return .integer(bytes: Int(t.pointee.size), signed: encoding & BTF_INT_SIGNED != 0)
        }
        if btf_is_any_enum(t) { return .enumeration(bytes: Int(t.pointee.size), signed: btf_kflag(t)) }
        if btf_is_array(t), let array = btf_array(t) {
            if case .integer(1, _) = resolve(array.pointee.type) { return .characters(capacity: Int(array.pointee.nelems)) }
            return .other("array")
        }
        if btf_is_ptr(t) { return .other("pointer") }
        if btf_is_struct(t) { return .other("struct \(name(of: t))") }
        return .other("kind \(btf_kind(t))")
    }
}

/// A variable of a data section seen as a struct: for readers of tables in
/// sections libbpf does not know, such as mmpolicy's ops table.
public struct BTFStructVariable: Sendable {
    public var name: String
    public var offset: Int
    public var structName: String?
    public var members: [(name: String, offset: Int, type: GlobalType)]
}

extension BPFObject {
    /// The variables BTF places in ELF section `section`, with their struct
    /// layout; nil if the object has no BTF.
    public func btfVariables(in section: String) -> [BTFStructVariable]? {
        guard let btf else { return nil }
        return btf.datasec(section).map { v, offset, _ in
            BTFStructVariable(
                name: btf.name(of: v), offset: offset,
                structName: btf.structName(ofVariableType: v.pointee.type),
                members: btf.members(ofStruct: v.pointee.type))
        }
    }
}
