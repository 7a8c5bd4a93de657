import CLibBPF
import SystemPackage

/// A read-only view of an ELF file's sections, symbols and relocations.
///
/// libbpf reads the sections it knows and skips the rest; mmpolicy's ops
/// table lives in a section of its own, so the loader reads it here, with
/// libelf. The image also checks up front that the bytes are a BPF ELF at all,
/// so a truncated file or an x86 binary gets a precise error rather than a
/// libbpf errno.
public struct ELFImage: Sendable {
    public struct Section: Sendable {
        public var index: Int
        public var name: String
        public var type: UInt32
        /// The section's bytes: a slice of the file's bytes (no copy).
        public var data: ArraySlice<UInt8>
        /// For SHT_REL: the index of the section the relocations apply to.
        public var info: UInt32
    }

    public struct Symbol: Sendable {
        public var name: String
        public var sectionIndex: Int
        public var value: UInt64
        public var type: UInt8
    }

    public struct Relocation: Sendable {
        public var offset: UInt64
        public var symbol: Symbol
    }

    public let sections: [Section]
    public let symbols: [Symbol]

    /// Parses `bytes` (named `name` in errors). Throws unless they are a
    /// complete 64-bit little-endian ELF relocatable object for EM_BPF.
    public init(bytes: [UInt8], name: String) throws(BPFError) {
        func fail(_ reason: String, _ fix: String) -> BPFError {
            BPFError(.open, object: name, reason: reason, fix: fix)
        }
        let rebuild = "Build it with `clang -target bpf -g -O2 -c X.bpf.c` (or `make build`)"
        guard bytes.count >= 4, bytes[0] == 0x7f, bytes[1] == 0x45, bytes[2] == 0x4c, bytes[3] == 0x46 else {
            throw fail("it is not an ELF file (no ELF magic in its first bytes)", rebuild)
        }
        // The fixed part of the ELF64 header, checked before libelf so each
        // kind of wrong file gets its own message.
        guard bytes.count >= 64 else {
            throw fail("its ELF header is incomplete (\(bytes.count) bytes; an ELF64 header has 64)", rebuild)
        }
        guard bytes[4] == UInt8(ELFCLASS64) else { throw fail("it is a 32-bit ELF file; BPF objects are 64-bit", rebuild) }
        let machine = bytes.loadLittleEndian(UInt16.self, at: 18)
        guard machine == UInt16(EM_BPF) else {
            throw fail("it is an ELF file for machine \(machine) (\(ELFImage.machineName(machine))), not for BPF (machine 247)", rebuild)
        }
        let sectionHeaderEnd = bytes.loadLittleEndian(UInt64.self, at: 40)
            + UInt64(bytes.loadLittleEndian(UInt16.self, at: 60)) * UInt64(bytes.loadLittleEndian(UInt16.self, at: 58))
        guard sectionHeaderEnd <= UInt64(bytes.count) else {
            throw fail("it is truncated: its section headers end at byte \(sectionHeaderEnd) but the file has \(bytes.count) bytes", rebuild)
        }
        elf_version(UInt32(EV_CURRENT))
        var sections: [Section] = []
        var symbols: [Symbol] = []
        let result: String? = bytes.withUnsafeBufferPointer { buffer -> String? in
            let raw = UnsafeMutableRawPointer(mutating: buffer.baseAddress!).assumingMemoryBound(to: CChar.self)
            guard let elf = elf_memory(raw, buffer.count) else { return "libelf cannot read it: \(String(cString: elf_errmsg(-1)))" }
            defer { elf_end(elf) }
            var header = GElf_Ehdr()
            guard gelf_getehdr(elf, &header) != nil else {
                return "its ELF header is unreadable (\(String(cString: elf_errmsg(-1))))"
            }
            guard header.e_type == UInt16(ET_REL) else { return "it is not a relocatable object (ELF type \(header.e_type))" }
            var stringIndex = 0
            guard elf_getshdrstrndx(elf, &stringIndex) == 0 else { return "it has no section name table" }
            var symtab: (data: UnsafeMutablePointer<Elf_Data>, link: Int, count: Int)?
            var scn = elf_nextscn(elf, nil)
            while let section = scn {
                defer { scn = elf_nextscn(elf, section) }
                var sh = GElf_Shdr()
                guard gelf_getshdr(section, &sh) != nil else { return "section header unreadable" }
                if sh.sh_type != UInt32(SHT_NOBITS), UInt64(sh.sh_offset) + UInt64(sh.sh_size) > UInt64(buffer.count) {
                    return "it is truncated: a section ends at byte \(sh.sh_offset + sh.sh_size) but the file has \(buffer.count) bytes"
                }
                let name = elf_strptr(elf, stringIndex, Int(sh.sh_name)).map { String(cString: $0) } ?? ""
                // The image is read in place (ELF_C_READ_MEMORY), so a section's
                // data is bytes[sh_offset ..< sh_offset + sh_size].
                var data: ArraySlice<UInt8> = []
                if sh.sh_type != UInt32(SHT_NOBITS) {
                    data = bytes[Int(sh.sh_offset)..<Int(sh.sh_offset + sh.sh_size)]
                    if sh.sh_type == UInt32(SHT_SYMTAB), let d = elf_getdata(section, nil) {
                        symtab = (d, Int(sh.sh_link), Int(sh.sh_size / max(sh.sh_entsize, 1)))
                    }
                }
                sections.append(Section(index: Int(elf_ndxscn(section)), name: name, type: sh.sh_type, data: data, info: sh.sh_info))
            }
            if let symtab {
                for i in 0..<symtab.count {
                    var sym = GElf_Sym()
                    guard gelf_getsym(symtab.data, Int32(i), &sym) != nil else { continue }
                    let name = elf_strptr(elf, symtab.link, Int(sym.st_name)).map { String(cString: $0) } ?? ""
                    symbols.append(Symbol(name: name, sectionIndex: Int(sym.st_shndx), value: sym.st_value, type: sym.st_info & 0xf))
                }
            }
            return nil
        }
        if let result { throw fail(result, rebuild) }
        self.sections = sections
        self.symbols = symbols
    }

    public func section(named name: String) -> Section? { sections.first { $0.name == name } }

    /// The relocations that apply to `section` (from its SHT_REL section).
    public func relocations(for section: Section) -> [Relocation] {
        guard let rel = sections.first(where: { $0.type == UInt32(SHT_REL) && Int($0.info) == section.index }) else { return [] }
        let entrySize = 16
        return stride(from: 0, to: rel.data.count - entrySize + 1, by: entrySize).compactMap { start in
            let offset = rel.data.loadLittleEndian(UInt64.self, at: start)
            let info = rel.data.loadLittleEndian(UInt64.self, at: start + 8)
            let symbolIndex = Int(info >> 32)
            guard symbolIndex < symbols.count else { return nil }
            return Relocation(offset: offset, symbol: symbols[symbolIndex])
        }
    }

    static func machineName(_ machine: UInt16) -> String {
        switch machine {
        case 62: return "x86-64"
        case 183: return "AArch64"
        case 3: return "i386"
        case 40: return "ARM"
        case 243: return "RISC-V"
        default: return "unknown"
        }
    }
}

extension RandomAccessCollection where Element == UInt8, Index == Int {
    /// The little-endian integer at `offset` from the start (of a slice, too);
    /// bytes past the end read as 0.
    public func loadLittleEndian<T: FixedWidthInteger>(_ type: T.Type, at offset: Int) -> T {
        var value: T = 0
        for i in 0..<MemoryLayout<T>.size where offset + i < count {
            value |= T(truncatingIfNeeded: self[startIndex + offset + i]) << (8 * i)
        }
        return value
    }
}
