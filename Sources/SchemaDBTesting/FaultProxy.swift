import NIOCore
import NIOPosix
import Synchronization

/// A TCP proxy in front of a PostgreSQL server, for fault tests. It forwards bytes both ways
/// and, once armed, lets a `COMMIT` through to the server, waits for the server to finish it,
/// and closes the connection without passing the answer on: the transaction commits, and the
/// client never hears of it.
/// It can also cut every connection and refuse new ones for a while, as a restart would.
///
/// ```swift
/// let proxy = try await FaultProxy.start(upstreamHost: "127.0.0.1", upstreamPort: 5432)
/// proxy.loseNextCommitReply(after: "CREATE SCHEMA")
/// // connect to 127.0.0.1:proxy.port ...
/// try await proxy.close()
/// ```
public final class FaultProxy: Sendable {
    /// The local port clients connect to.
    public let port: Int
    private let listener: any Channel
    private let faults: Faults

    final class Faults: Sendable {
        /// The reply the proxy will lose.
        enum Armed {
            /// The answer to the next `COMMIT` sent on a connection that has sent the marker
            /// before (any connection when `nil`).
            case commit(after: String?)
            /// The answer to the next message that contains the text.
            case statement(containing: String)
        }

        struct State {
            var armed: Armed?
            var commitRepliesLost = 0
            var refusing = false
            var open: [ObjectIdentifier: any Channel] = [:]
            /// Where new connections are forwarded.
            var upstream: (host: String, port: Int)
        }

        let state: Mutex<State>

        init(upstream: (host: String, port: Int)) {
            state = Mutex(State(upstream: upstream))
        }

        /// Whether the connection that has sent `sent` (including `chunk`) should lose the
        /// reply to `chunk`; disarms when it says yes.
        func cutsAfter(_ chunk: [UInt8], sent: [UInt8]) -> Bool {
            state.withLock { state in
                switch state.armed {
                case .commit(let marker)?:
                    guard chunk.containsSubsequence(FaultProxy.commitBytes) else { return false }
                    if let marker, !sent.containsSubsequence(Array(marker.utf8)) { return false }
                case .statement(let text)?:
                    guard chunk.containsSubsequence(Array(text.utf8)) else { return false }
                case nil:
                    return false
                }
                state.armed = nil
                state.commitRepliesLost += 1
                return true
            }
        }
    }

    /// `COMMIT` as an extended-protocol Parse message carries it: the text and its terminating NUL.
    static let commitBytes = Array("COMMIT".utf8) + [0]

    private init(port: Int, listener: any Channel, faults: Faults) {
        self.port = port
        self.listener = listener
        self.faults = faults
    }

    /// Starts a proxy on a free loopback port, forwarding to `upstreamHost:upstreamPort`.
    public static func start(upstreamHost: String, upstreamPort: Int) async throws -> FaultProxy {
        let faults = Faults(upstream: (upstreamHost, upstreamPort))
        let group = MultiThreadedEventLoopGroup.singleton
        let listener = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.autoRead, value: false)
            .childChannelInitializer { inbound in
                let id = ObjectIdentifier(inbound)
                let (refused, upstream) = faults.state.withLock { state in
                    if !state.refusing { state.open[id] = inbound }
                    return (state.refusing, state.upstream)
                }
                if refused {
                    return inbound.pipeline.addHandler(StartupRefusal()).flatMap { inbound.setOption(.autoRead, value: true) }
                }
                inbound.closeFuture.whenComplete { _ in _ = faults.state.withLock { $0.open.removeValue(forKey: id) } }
                return ClientBootstrap(group: inbound.eventLoop)
                    .connect(host: upstream.host, port: upstream.port)
                    .flatMap { outbound in
                        let lostReply = LostReply()
                        let fromClient = Relay(peer: outbound, faults: faults, lostReply: lostReply, inspectsCommits: true)
                        let fromServer = Relay(peer: inbound, faults: faults, lostReply: lostReply, inspectsCommits: false)
                        return inbound.pipeline.addHandler(fromClient)
                            .and(outbound.pipeline.addHandler(fromServer))
                            .flatMap { _ in inbound.setOption(.autoRead, value: true) }
                    }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
        guard let port = listener.localAddress?.port else { throw ChannelError.unknownLocalAddress }
        return FaultProxy(port: port, listener: listener, faults: faults)
    }

    /// Arms the proxy: the next `COMMIT` sent on a connection that has sent `marker` before
    /// (any connection when `nil`) reaches the server, and once the server has answered, the
    /// connection is closed without passing the answer on. Fires once.
    public func loseNextCommitReply(after marker: String? = nil) {
        faults.state.withLock { $0.armed = .commit(after: marker) }
    }

    /// Arms the proxy: the next message a client sends that contains `text` (a statement run
    /// outside a transaction, which commits on its own) reaches the server, and once the server
    /// has answered, the connection is closed without passing the answer on. Fires once.
    public func loseNextReply(toStatementContaining text: String) {
        faults.state.withLock { $0.armed = .statement(containing: text) }
    }

    /// Cuts every open connection and refuses new ones until ``acceptConnections()``: what a
    /// server restart (`pg_ctl restart -m immediate`) looks like to its clients. A refused
    /// connection gets the server's own answer while it starts up, `FATAL 57P03`.
    public func cutAllConnections() {
        let open = faults.state.withLock { state in
            state.refusing = true
            defer { state.open = [:] }
            return Array(state.open.values)
        }
        for channel in open { channel.close(promise: nil) }
    }

    /// Forwards new connections to `host:port` from now on, as a DNS name or a virtual IP
    /// moved to another server would; open connections stay where they are.
    public func redirect(toHost host: String, port: Int) {
        faults.state.withLock { $0.upstream = (host, port) }
    }

    /// Accepts connections again after ``cutAllConnections()``.
    public func acceptConnections() {
        faults.state.withLock { $0.refusing = false }
    }

    /// How many replies were lost so far.
    public var commitRepliesLost: Int { faults.state.withLock { $0.commitRepliesLost } }

    /// Stops accepting connections. Connections already open stay until their ends close them.
    public func close() async throws {
        try await listener.close()
    }

    /// Answers a connection as a starting server does: no to TLS, then `FATAL 57P03` to the
    /// startup message, and closes.
    private final class StartupRefusal: ChannelInboundHandler, @unchecked Sendable {
        // @unchecked: NIO calls a handler on its channel's event loop only; `received` is touched there alone.
        typealias InboundIn = ByteBuffer

        private var received = ByteBuffer()
        private static let encryptionRequests: Set<Int32> = [80_877_103, 80_877_104]

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            var bytes = Self.unwrapInboundIn(data)
            received.writeBuffer(&bytes)
            while let length = received.getInteger(at: received.readerIndex, as: Int32.self), received.readableBytes >= Int(length) {
                let code = received.getInteger(at: received.readerIndex + 4, as: Int32.self)
                received.moveReaderIndex(forwardBy: Int(max(length, 4)))
                if let code, Self.encryptionRequests.contains(code) {
                    context.writeAndFlush(NIOAny(context.channel.allocator.buffer(string: "N")), promise: nil)
                    continue
                }
                var fields = ByteBuffer()
                for (field, value) in [("S", "FATAL"), ("V", "FATAL"), ("C", "57P03"), ("M", "the database system is starting up")] {
                    fields.writeString(field + value)
                    fields.writeInteger(UInt8(0))
                }
                fields.writeInteger(UInt8(0))
                var reply = context.channel.allocator.buffer(capacity: fields.readableBytes + 5)
                reply.writeString("E")
                reply.writeInteger(Int32(fields.readableBytes + 4))
                reply.writeBuffer(&fields)
                let channel = context.channel
                context.writeAndFlush(NIOAny(reply)).whenComplete { _ in channel.close(promise: nil) }
                return
            }
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            context.close(promise: nil)
        }
    }

    /// One proxied connection's fault, shared by its two relays (both run on one event loop).
    private final class LostReply: @unchecked Sendable {
        // @unchecked: touched only on the event loop both channels of the connection share.
        /// The armed statement went to the server: its answer is swallowed, and the connection
        /// ends once the server has finished it (ReadyForQuery).
        var swallowing = false
    }

    /// Forwards what one side reads to the other side.
    private final class Relay: ChannelInboundHandler, @unchecked Sendable {
        // @unchecked: NIO calls a handler on its channel's event loop only; `sent` and `tail`
        // are touched there alone, and `peer` is a Channel, which is thread-safe.
        typealias InboundIn = ByteBuffer

        let peer: any Channel
        let faults: Faults
        let lostReply: LostReply
        let inspectsCommits: Bool
        private var sent: [UInt8] = []
        private var tail: [UInt8] = []

        init(peer: any Channel, faults: Faults, lostReply: LostReply, inspectsCommits: Bool) {
            self.peer = peer
            self.faults = faults
            self.lostReply = lostReply
            self.inspectsCommits = inspectsCommits
        }

        /// ReadyForQuery: the server has finished what it was sent, committed or not.
        private static let readyForQuery: [UInt8] = [0x5A, 0, 0, 0, 5]

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let buffer = Self.unwrapInboundIn(data)
            if !inspectsCommits {
                guard lostReply.swallowing else { return peer.writeAndFlush(buffer, promise: nil) }
                // The answer is lost: once it is complete, both sides of the connection end.
                let chunk = tail + Array(buffer.readableBytesView)
                tail = Array(chunk.suffix(Self.readyForQuery.count - 1))
                if chunk.containsSubsequence(Self.readyForQuery) {
                    peer.close(promise: nil)
                    context.close(promise: nil)
                }
                return
            }
            if !lostReply.swallowing {
                let chunk = Array(buffer.readableBytesView)
                sent += chunk
                if faults.cutsAfter(chunk, sent: sent) {
                    lostReply.swallowing = true
                    // Without an answer within 10 s, the connection ends anyway.
                    let client = context.channel
                    let server = peer
                    context.eventLoop.scheduleTask(in: .seconds(10)) {
                        client.close(promise: nil)
                        server.close(promise: nil)
                    }
                }
            }
            // The rest of the statement's messages (its Sync) follow it to the server.
            peer.writeAndFlush(buffer, promise: nil)
        }

        func channelInactive(context: ChannelHandlerContext) {
            peer.close(promise: nil)
            context.fireChannelInactive()
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            context.close(promise: nil)
        }
    }
}

extension Array where Element == UInt8 {
    func containsSubsequence(_ needle: [UInt8]) -> Bool {
        guard !needle.isEmpty, count >= needle.count else { return false }
        for start in 0...(count - needle.count) where self[start] == needle[0] {
            if self[start..<(start + needle.count)].elementsEqual(needle) { return true }
        }
        return false
    }
}
