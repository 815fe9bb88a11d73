/// Runs `body` for every element of `items`, at most `width` at a time, refilling as each
/// finishes, and returns the results in completion order. The first error cancels the rest.
package func forEachConcurrently<Item: Sendable, Result: Sendable>(
    _ items: some Collection<Item>,
    width: Int,
    _ body: @escaping @Sendable (Item) async throws -> Result
) async throws -> [Result] {
    try await withThrowingTaskGroup(of: Result.self) { group in
        var pending = items.makeIterator()
        var results: [Result] = []
        results.reserveCapacity(items.count)
        for _ in 0..<max(1, width) {
            guard let item = pending.next() else { break }
            group.addTask { try await body(item) }
        }
        while let result = try await group.next() {
            results.append(result)
            if let item = pending.next() { group.addTask { try await body(item) } }
        }
        return results
    }
}
