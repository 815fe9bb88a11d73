/// Runs `body` for every element of `items`, at most `width` at a time, refilling as each
/// finishes, and returns the results in completion order. After the first error no element
/// starts, the ones running finish (a change cut off half-way would leave its outcome
/// unknown), and that error is thrown.
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
        var firstError: (any Error)?
        while !group.isEmpty {
            do {
                guard let result = try await group.next() else { break }
                results.append(result)
                if firstError == nil, let item = pending.next() { group.addTask { try await body(item) } }
            } catch {
                if firstError == nil { firstError = error }
            }
        }
        if let firstError { throw firstError }
        return results
    }
}
