import Dispatch
import Foundation
import NIOCore

extension WireServer {
    /// Runs this server as the process's job: binds, prints `listening on HOST:PORT` on
    /// standard output (scripts wait for that line), and on SIGTERM or SIGINT stops
    /// gracefully, shuts `group` down and exits 0. Exits 1 when it cannot bind. Never returns.
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
        for signalNumber in [SIGTERM, SIGINT] {
            signal(signalNumber, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: .main)
            source.setEventHandler { [self] in
                logger.info("signal received, stopping", metadata: ["signal": "\(signalNumber)"])
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
