extension TenantDirectory {
    /// The LRU cache and the loads in flight: a value type behind the directory's mutex.
    struct State: ~Copyable {
        enum Decision {
            case hit(Entry)
            case load
            case wait
        }

        private struct Node {
            var slug: String
            var entry: Entry
            var loadedAt: ContinuousClock.Instant
            /// Trusted for at most this long, when shorter than the directory's time to live.
            var maximumAge: Duration?
            var newer: Int
            var older: Int
        }

        let capacity: Int
        private(set) var index: [String: Int] = [:]
        private var nodes: [Node] = []
        private var freeSlots: [Int] = []
        private var newest = -1
        private var oldest = -1
        private var loading: [String: [CheckedContinuation<Entry?, any Error>]] = [:]
        private var invalidatedWhileLoading: Set<String> = []
        private(set) var hits = 0
        private(set) var misses = 0
        private(set) var evictions = 0

        init(capacity: Int) {
            self.capacity = capacity
            index.reserveCapacity(min(capacity, 1 << 16))
        }

        /// A fresh cached entry, touched as most recently used.
        mutating func peek(_ slug: String, now: ContinuousClock.Instant, timeToLive: Duration) -> Decision? {
            guard let slot = index[slug] else { return nil }
            let trusted = nodes[slot].maximumAge.map { min($0, timeToLive) } ?? timeToLive
            guard now - nodes[slot].loadedAt < trusted else { return nil }
            hits += 1
            moveToFront(slot)
            return .hit(nodes[slot].entry)
        }

        mutating func decide(_ slug: String, now: ContinuousClock.Instant, timeToLive: Duration) -> Decision {
            if let hit = peek(slug, now: now, timeToLive: timeToLive) { return hit }
            if loading[slug] != nil { return .wait }
            misses += 1
            loading[slug] = []
            return .load
        }

        /// Adds a waiter to a load in flight; `false` when the load already finished.
        mutating func join(_ slug: String, _ continuation: CheckedContinuation<Entry?, any Error>) -> Bool {
            guard loading[slug] != nil else { return false }
            loading[slug]!.append(continuation)
            return true
        }

        /// Caches a successful load and returns the waiters to resume (outside the lock). A load
        /// invalidated while in flight is handed to its waiters but not cached.
        /// - Parameter startedAt: When the load began to read the registry: the entry's age
        ///   counts from then, since the registry may have changed right after.
        /// - Parameter maximumAge: How long the entry is trusted, when shorter than the directory's time to live.
        mutating func finishLoading(_ slug: String, result: Result<Entry, any Error>, startedAt: ContinuousClock.Instant,
                                    maximumAge: Duration? = nil) -> [CheckedContinuation<Entry?, any Error>] {
            guard let waiters = loading.removeValue(forKey: slug) else { return [] }
            let invalidated = invalidatedWhileLoading.remove(slug) != nil
            if case .success(let entry) = result, !invalidated { insert(slug, entry, now: startedAt, maximumAge: maximumAge) }
            return waiters
        }

        mutating func remove(_ slug: String) {
            // A load in flight goes on for its waiters, but its result is no longer cached.
            if loading[slug] != nil { invalidatedWhileLoading.insert(slug) }
            guard let slot = index.removeValue(forKey: slug) else { return }
            unlink(slot)
            freeSlots.append(slot)
        }

        mutating func removeAll() {
            invalidatedWhileLoading.formUnion(loading.keys)
            index.removeAll()
            nodes.removeAll()
            freeSlots.removeAll()
            newest = -1
            oldest = -1
        }

        private mutating func insert(_ slug: String, _ entry: Entry, now: ContinuousClock.Instant, maximumAge: Duration?) {
            if let slot = index[slug] {
                nodes[slot].entry = entry
                nodes[slot].loadedAt = now
                nodes[slot].maximumAge = maximumAge
                moveToFront(slot)
                return
            }
            if index.count >= capacity, oldest >= 0 {
                let victim = oldest
                index.removeValue(forKey: nodes[victim].slug)
                unlink(victim)
                freeSlots.append(victim)
                evictions += 1
            }
            let node = Node(slug: slug, entry: entry, loadedAt: now, maximumAge: maximumAge, newer: -1, older: -1)
            let slot: Int
            if let free = freeSlots.popLast() {
                nodes[free] = node
                slot = free
            } else {
                nodes.append(node)
                slot = nodes.count - 1
            }
            index[slug] = slot
            linkAtFront(slot)
        }

        private mutating func moveToFront(_ slot: Int) {
            guard slot != newest else { return }
            unlink(slot)
            linkAtFront(slot)
        }

        private mutating func linkAtFront(_ slot: Int) {
            nodes[slot].newer = -1
            nodes[slot].older = newest
            if newest >= 0 { nodes[newest].newer = slot }
            newest = slot
            if oldest < 0 { oldest = slot }
        }

        private mutating func unlink(_ slot: Int) {
            let newer = nodes[slot].newer
            let older = nodes[slot].older
            if newer >= 0 { nodes[newer].older = older } else { newest = older }
            if older >= 0 { nodes[older].newer = newer } else { oldest = newer }
            nodes[slot].newer = -1
            nodes[slot].older = -1
        }
    }
}
