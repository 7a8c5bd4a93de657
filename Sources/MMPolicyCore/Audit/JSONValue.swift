import Foundation

/// Any JSON value, kept as it was written.
///
/// It exists so a record can carry a kind's payload through the store and
/// the control socket as structured JSON (not an escaped string) without the
/// daemon knowing the payload's type. Integers are kept apart from other
/// numbers so that a 64-bit count or score survives the round trip exactly.
public enum JSONValue: Codable, Sendable, Equatable {
    case null
    case bool(Bool)
    case integer(Int64)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Int64.self) {
            self = .integer(value)
        } else if let value = try? container.decode(Double.self) {
            self = .number(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([JSONValue].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: JSONValue].self))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let value): try container.encode(value)
        case .integer(let value): try container.encode(value)
        case .number(let value): try container.encode(value)
        case .string(let value): try container.encode(value)
        case .array(let value): try container.encode(value)
        case .object(let value): try container.encode(value)
        }
    }

    /// `value` as JSON. Non-finite numbers are written as strings, as the store does.
    public init<Value: Encodable>(encoding value: Value) throws {
        let data = try Self.encoder.encode(value)
        self = try Self.decoder.decode(JSONValue.self, from: data)
    }

    /// This JSON read as `Value`.
    public func decode<Value: Decodable>(_ type: Value.Type) throws -> Value {
        try Self.decoder.decode(Value.self, from: Self.encoder.encode(self))
    }

    /// Member `key` of an object; nil for anything else.
    public subscript(key: String) -> JSONValue? {
        if case .object(let members) = self { return members[key] }
        return nil
    }

    private static var encoder: JSONEncoder { StoredJSON.encoder }
    private static var decoder: JSONDecoder { StoredJSON.decoder }
}
