#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

import SystemPackage

// MARK: - File access

/// Reads a whole file, failing with an errno (EISDIR for a directory, EFBIG past `limit`).
func readWholeFile(_ path: String, limit: Int) -> Result<[UInt8], Errno> {
    let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
    guard fd >= 0 else { return .failure(Errno(rawValue: errno)) }
    defer { close(fd) }
    var info = stat()
    guard fstat(fd, &info) == 0 else { return .failure(Errno(rawValue: errno)) }
    if info.st_mode & 0o170000 == 0o040000 { return .failure(.isDirectory) }
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 64 * 1024)
    while true {
        let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if count < 0 {
            if errno == EINTR { continue }
            return .failure(Errno(rawValue: errno))
        }
        if count == 0 { return .success(bytes) }
        bytes += buffer[0..<count]
        if bytes.count > limit { return .failure(.fileTooLarge) }
    }
}

/// The position and nature of the first byte that makes `bytes` unusable as a
/// TOML document: invalid UTF-8, or a NUL (which would silently end the
/// document at the C boundary).
func firstEncodingProblem(_ bytes: [UInt8]) -> (line: Int, column: Int, problem: String)? {
    var line = 1
    var column = 1
    var iterator = bytes.makeIterator()
    var decoder = UTF8()
    while true {
        switch decoder.decode(&iterator) {
        case .emptyInput:
            return nil
        case .error:
            return (line, column, "the file is not valid UTF-8 text")
        case .scalarValue(let scalar):
            if scalar == "\0" { return (line, column, "a NUL character (U+0000) is not allowed in a TOML document") }
            if scalar == "\n" {
                line += 1
                column = 1
            } else {
                column += 1
            }
        }
    }
}

