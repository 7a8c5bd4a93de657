import Foundation

/// How mmpolicy writes and reads its stored JSON (the state database's
/// columns, decision payloads): sorted keys, and NaN or infinite numbers
/// spelled as strings, since plain JSON has no such numbers and one odd
/// latency must not make a whole batch fail to encode.
public enum StoredJSON {
    private static let nonFinite = (positive: "+Infinity", negative: "-Infinity", nan: "NaN")

    public static var encoder: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        encoder.nonConformingFloatEncodingStrategy = .convertToString(
            positiveInfinity: nonFinite.positive, negativeInfinity: nonFinite.negative, nan: nonFinite.nan)
        return encoder
    }

    public static var decoder: JSONDecoder {
        let decoder = JSONDecoder()
        decoder.nonConformingFloatDecodingStrategy = .convertFromString(
            positiveInfinity: nonFinite.positive, negativeInfinity: nonFinite.negative, nan: nonFinite.nan)
        return decoder
    }
}
