import Dispatch
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import PharosObservability

extension WireServer {
    /// The admin port a server process serves beside the wire protocol.
    public struct AdminEndpoint: Sendable {
        /// The HTTP server (`/metrics`, `/livez`, `/readyz`).
        public var server: AdminServer
        /// Where it listens.
        public var host: String
        /// Its port (0: a free one).
        public var port: Int

        /// An endpoint serving `server` on `host:port`.
        public init(server: AdminServer, host: String, port: Int) {
            self.server = server
            self.host = host
            self.port = port
        }
    }

    /// Runs this server as the process's job: binds, prints `listening on HOST:PORT` on
    /// standard output (scripts wait for that line), then starts `admin` (printing
    /// `admin on HOST:PORT`) and tells systemd it is ready (`Type=notify`). On SIGTERM or
    /// SIGINT it stops gracefully (the service closes its connections before the event loops
    /// shut down), then exits 0. SIGHUP runs `reload` (what this process can reload: the
    /// coordinator re-reads its cluster map) and keeps serving, so a node also survives the
    /// terminal it was started from going away. Exits 1 when it cannot bind. Never returns.
    public func serveUntilSignalled(host: String, port: Int, group: any EventLoopGroup, program: String,
                                    admin: AdminEndpoint? = nil,
                                    reload: (@Sendable () async -> String)? = nil) -> Never {
        if tls != nil { logger.notice("connections are TLS", metadata: ["admin port": "TLS too"]) }
        if let access {
            let counts = access.counts
            logger.notice("requests need tokens", metadata: ["read": "\(counts[.read] ?? 0)", "write": "\(counts[.write] ?? 0)", "admin": "\(counts[.admin] ?? 0)"])
        } else if !Self.isLoopback(host) && tls == nil {
            logger.warning("listening on a non-loopback address without tokens (--tokens) or TLS (--tls-certificate): anyone who can reach \(host):\(port) can read, write and administer this \(program)",
                           metadata: ["address": "\(host):\(port)"])
        }
        Task {
            do {
                let bound = try await start(host: host, port: port)
                FileHandle.standardOutput.write(Data("listening on \(host):\(bound)\n".utf8))
            } catch {
                FileHandle.standardError.write(Data("\(program): cannot listen on \(host):\(port): \(error)\n".utf8))
                Foundation.exit(1)
            }
            if let admin {
                do {
                    let bound = try await admin.server.start(host: admin.host, port: admin.port)
                    FileHandle.standardOutput.write(Data("admin on \(admin.host):\(bound)\n".utf8))
                } catch {
                    FileHandle.standardError.write(Data("\(program): cannot serve the admin port on \(admin.host):\(admin.port): \(error) (--admin-port picks another, --no-admin serves none)\n".utf8))
                    Foundation.exit(1)
                }
            }
            SystemdNotifier.notify("READY=1\nSTATUS=serving on \(host):\(boundPort ?? port)")
        }
        var sources: [any DispatchSourceSignal] = []
        signal(SIGHUP, SIG_IGN)
        let hangUp = DispatchSource.makeSignalSource(signal: SIGHUP, queue: .main)
        hangUp.setEventHandler { [self] in
            guard let reload else {
                logger.notice("SIGHUP received: \(program) has nothing to reload and keeps serving (SIGTERM or SIGINT stops it)")
                return
            }
            SystemdNotifier.reloading()
            Task {
                let outcome = await reload()
                logger.notice("SIGHUP received: reloaded", metadata: ["outcome": "\(outcome)"])
                SystemdNotifier.notify("READY=1\nSTATUS=serving; last reload: \(outcome)")
            }
        }
        hangUp.resume()
        sources.append(hangUp)
        let stopping = NIOLockedValueBox(false)
        for signalNumber in [SIGTERM, SIGINT] {
            signal(signalNumber, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: .main)
            source.setEventHandler { [self] in
                // Ctrl-C in a terminal and the launcher's SIGTERM can both arrive: stop once.
                guard stopping.withLockedValue({ let first = !$0; $0 = true; return first }) else { return }
                logger.info("signal received, stopping", metadata: ["signal": "\(signalNumber == SIGINT ? "SIGINT" : "SIGTERM")"])
                SystemdNotifier.notify("STOPPING=1")
                Task {
                    await admin?.server.stop()
                    await stop()
                    try? await group.shutdownGracefully()
                    Foundation.exit(0)
                }
            }
            source.resume()
            sources.append(source)
        }
        withExtendedLifetime(sources) { dispatchMain() }
    }

    /// Whether `host` names only this machine (so an unauthenticated listener is private).
    static func isLoopback(_ host: String) -> Bool {
        host == "localhost" || host == "::1" || host.hasPrefix("127.")
    }
}
