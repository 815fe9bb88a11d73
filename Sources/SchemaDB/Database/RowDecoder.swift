import Foundation
public import PostgresNIO
import NIOCore

/// Decodes a `Decodable` value from one row, matching coding keys to column names.
///
/// A key `createdAt` matches a column `createdAt`, or else `created_at`. A single-value type
/// (`String`, `Int`, …) decodes from the first column. Column types must be decodable by
/// postgres-nio (`PostgresDecodable`); nested `Decodable` values decode from `json`/`jsonb`.
public struct RowDecoder: Sendable {
    public init() {}

    /// Decodes `type` from `row`.
    public func decode<Value: Decodable>(_ type: Value.Type, from row: PostgresRow) throws -> Value {
        try Value(from: _RowDecoder(row: row.makeRandomAccess(), codingPath: [], positions: ColumnPositions()))
    }

    /// Decodes `type` from each of `rows`, rows of one result set: each key's column is looked
    /// up once, not once per row.
    func decodeAll<Value: Decodable>(_ type: Value.Type, from rows: [PostgresRow]) throws -> [Value] {
        let positions = ColumnPositions()
        return try rows.map {
            positions.startRow()
            return try Value(from: _RowDecoder(row: $0.makeRandomAccess(), codingPath: [], positions: positions))
        }
    }
}

/// The column of each coding key in the rows of one result set, found on first use: the column
/// named like the key, or else like the key in snake case.
///
/// A synthesized `init(from:)` asks for the same keys in the same order on every row, so each
/// row first compares the key with the one asked for at the same step of the previous row (a
/// string comparison) and hashes only when the order changes (optional values skipped, say).
private final class ColumnPositions {
    private var byKey: [String: Int] = [:]
    private var byName: [String: Int]?
    private var steps: [(key: String, position: Int)] = []
    private var step = 0

    /// Starts the keys of a new row.
    func startRow() { step = 0 }

    func position(of key: String, in row: PostgresRandomAccessRow) -> Int? {
        if step > 0, steps[step - 1].key == key { return Self.found(steps[step - 1].position) }  // the same key again (contains, then decode)
        let position: Int
        if step < steps.count, steps[step].key == key {
            position = steps[step].position
        } else {
            position = lookUp(key, in: row)
            if step < steps.count { steps[step] = (key, position) } else { steps.append((key, position)) }
        }
        step += 1
        return Self.found(position)
    }

    private static func found(_ position: Int) -> Int? { position >= 0 ? position : nil }

    private func lookUp(_ key: String, in row: PostgresRandomAccessRow) -> Int {
        if let known = byKey[key] { return known }
        let names = byName ?? Self.names(of: row)
        byName = names
        var found = names[key]
        if found == nil {
            let snake = RowKeyedContainer<AnyCodingKey>.snakeCase(key)
            if snake != key { found = names[snake] }
        }
        byKey[key] = found ?? -1
        return found ?? -1
    }

    private static func names(of row: PostgresRandomAccessRow) -> [String: Int] {
        var names: [String: Int] = [:]
        for index in 0..<row.count where names[row[index].columnName] == nil { names[row[index].columnName] = index }
        return names
    }
}

private struct AnyCodingKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

private struct _RowDecoder: Decoder {
    let row: PostgresRandomAccessRow
    let codingPath: [any CodingKey]
    let positions: ColumnPositions
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        KeyedDecodingContainer(RowKeyedContainer<Key>(row: row, codingPath: codingPath, positions: positions))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        throw DecodingError.typeMismatch([Any].self, .init(codingPath: codingPath, debugDescription: "a row decodes as a keyed value or a single value, not as an array"))
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer {
        guard row.count > 0 else {
            throw DecodingError.valueNotFound(Any.self, .init(codingPath: codingPath, debugDescription: "the row has no columns"))
        }
        return CellContainer(cell: row[0], parentPath: codingPath)
    }
}

private struct RowKeyedContainer<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let row: PostgresRandomAccessRow
    let codingPath: [any CodingKey]
    let positions: ColumnPositions

    var allKeys: [Key] {
        (0..<row.count).compactMap { Key(stringValue: row[$0].columnName) }
    }

    func contains(_ key: Key) -> Bool { positions.position(of: key.stringValue, in: row) != nil }

    private func cell(for key: Key) throws -> PostgresCell {
        guard let position = positions.position(of: key.stringValue, in: row) else {
            throw DecodingError.keyNotFound(key, .init(codingPath: codingPath, debugDescription: "the row has no column \"\(key.stringValue)\" or \"\(Self.snakeCase(key.stringValue))\""))
        }
        return row[position]
    }

    func decodeNil(forKey key: Key) throws -> Bool { try cell(for: key).bytes == nil }

    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
        try CellContainer(cell: try cell(for: key), parentPath: codingPath, key: key).decode(type)
    }

    // The common column types, decoded without the generic path's dynamic casts.
    func decode(_ type: String.Type, forKey key: Key) throws -> String { try cell(for: key).decode(String.self) }
    func decode(_ type: Int.Type, forKey key: Key) throws -> Int { try cell(for: key).decode(Int.self) }
    func decode(_ type: Int64.Type, forKey key: Key) throws -> Int64 { try cell(for: key).decode(Int64.self) }
    func decode(_ type: Int32.Type, forKey key: Key) throws -> Int32 { try cell(for: key).decode(Int32.self) }
    func decode(_ type: Bool.Type, forKey key: Key) throws -> Bool { try cell(for: key).decode(Bool.self) }
    func decode(_ type: Double.Type, forKey key: Key) throws -> Double { try cell(for: key).decode(Double.self) }

    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws -> KeyedDecodingContainer<NestedKey> {
        throw DecodingError.typeMismatch(type, .init(codingPath: codingPath + [key], debugDescription: "nested containers are not supported; decode a jsonb column into a Decodable type instead"))
    }

    func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
        throw DecodingError.typeMismatch([Any].self, .init(codingPath: codingPath + [key], debugDescription: "nested containers are not supported; decode an array column into [T] instead"))
    }

    func superDecoder() throws -> any Decoder { throw DecodingError.typeMismatch(Any.self, .init(codingPath: codingPath, debugDescription: "super decoders are not supported")) }
    func superDecoder(forKey key: Key) throws -> any Decoder { try superDecoder() }

    static func snakeCase(_ name: String) -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(name.utf8.count + 4)
        for byte in name.utf8 {
            guard byte < 0x80 else { return unicodeSnakeCase(name) }
            if byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") {
                if !bytes.isEmpty { bytes.append(UInt8(ascii: "_")) }
                bytes.append(byte + 32)
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    private static func unicodeSnakeCase(_ name: String) -> String {
        var result = ""
        for character in name {
            if character.isUppercase {
                if !result.isEmpty { result.append("_") }
                result.append(contentsOf: character.lowercased())
            } else {
                result.append(character)
            }
        }
        return result
    }
}

private struct CellContainer: SingleValueDecodingContainer {
    let cell: PostgresCell
    let parentPath: [any CodingKey]
    var key: (any CodingKey)? = nil

    var codingPath: [any CodingKey] { key.map { parentPath + [$0] } ?? parentPath }

    func decodeNil() -> Bool { cell.bytes == nil }

    func decode<T: Decodable>(_ type: T.Type) throws -> T {
        // Dates and UUIDs reach this generic path; a type comparison is cheaper than a cast.
        if T.self == Date.self { return unsafeBitCast(try cell.decode(Date.self), to: T.self) }
        if T.self == UUID.self { return unsafeBitCast(try cell.decode(UUID.self), to: T.self) }
        if let decodable = type as? any PostgresDecodable.Type {
            return try open(decodable) as! T
        }
        // Other Decodable types (structs, enums with associated values) come from json/jsonb.
        return try cell.decode(PostgresJSONValue<T>.self).value
    }

    private func open<D: PostgresDecodable>(_ type: D.Type) throws -> D {
        try cell.decode(D.self)
    }
}

/// A `Decodable` value stored as `json` or `jsonb`.
private struct PostgresJSONValue<Value: Decodable>: PostgresDecodable {
    var value: Value

    init<JSONDecoder: PostgresJSONDecoder>(
        from buffer: inout ByteBuffer, type: PostgresDataType, format: PostgresFormat, context: PostgresDecodingContext<JSONDecoder>
    ) throws {
        switch (type, format) {
        case (.jsonb, .binary):
            guard buffer.readInteger(as: UInt8.self) == 1 else { throw PostgresDecodingError.Code.failure }
            value = try context.jsonDecoder.decode(Value.self, from: buffer)
        case (.json, _), (.jsonb, .text):
            value = try context.jsonDecoder.decode(Value.self, from: buffer)
        default:
            throw PostgresDecodingError.Code.typeMismatch
        }
    }
}
