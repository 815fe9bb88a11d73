import Synchronization
import Testing
@testable import Tenancy

struct BoundedConcurrencyTests {
    struct Failure: Error {}

    @Test func afterAnErrorNothingStartsAndWhatRunsFinishes() async throws {
        let started = Mutex<Set<Int>>([])
        let finished = Mutex<Set<Int>>([])
        await #expect(throws: Failure.self) {
            try await forEachConcurrently(0..<6, width: 2) { item in
                _ = started.withLock { $0.insert(item) }
                if item == 0 { throw Failure() }
                // Ignores cancellation, as a transaction waiting for its COMMIT would.
                try? await Task.sleep(for: .milliseconds(200))
                #expect(!Task.isCancelled, "a running element is not cancelled by another's error")
                _ = finished.withLock { $0.insert(item) }
            }
        }
        #expect(started.withLock { $0 } == [0, 1])
        #expect(finished.withLock { $0 } == [1])
    }

    @Test func resultsComeBackForEveryElement() async throws {
        let results = try await forEachConcurrently(1...20, width: 3) { $0 * 2 }
        #expect(results.sorted() == Array(stride(from: 2, through: 40, by: 2)))
    }
}
