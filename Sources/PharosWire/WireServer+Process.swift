import Dispatch
import Foundation
import NIOConcurrencyHelpers
import NIOCore

extension WireServer {
    /// Runs this server as the process's job: binds, prints `listening on HOST:PORT` on
    /// standard output (scripts wait for that line), and on SIGTERM or SIGINT stops
    /// gracefully (the service closes its connections before the event loops shut down),
    /// then exits 0. SIGHUP is logged and otherwise ignored: a node keeps serving when the
    /// terminal it was started from goes away. Exits 1 when it cannot bind. Never returns.
    public func serveUntilSignalled(host: String, port: Int, group: any EventLoopGroup, program: String) -> Never {
        Task {
            do {
                let bound = try await start(host: host, port: port)
                FileHandle.standardOutput.write(Data("listening on \(host):\(bound)\n".utf8))
            } catch {
                FileHandle.standardError.write(Data("\(program): cannot listen on \(host):\(port): \(error)\n".utf8))
                Foundation.exit(1)
            }
        }
        var sources: [any DispatchSourceSignal] = []
        signal(SIGHUP, SIG_IGN)
        let hangUp = DispatchSource.makeSignalSource(signal: SIGHUP, queue: .main)
        hangUp.setEventHandler { [self] in
            logger.notice("SIGHUP received and ignored: \(program) keeps serving (SIGTERM or SIGINT stops it; configuration is read at start only)")
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
                Task {
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
}
