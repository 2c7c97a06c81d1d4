import NIOCore
import NIOSSL

/// TLS for the wire protocol (swift-nio-ssl), configured by file paths.
///
/// A server presents its certificate; given a client CA it also requires a client certificate
/// signed by that CA (mutual TLS: shards that accept only the coordinator). A client verifies
/// the server against a CA (its host name, or its IP address when addressed by one) and, for
/// mutual TLS, presents its own certificate. TLS 1.2 at least.
public struct WireTLS: Sendable {
    let context: NIOSSLContext
    /// Whether this is a client configuration.
    public let isClient: Bool

    private init(context: NIOSSLContext, isClient: Bool) {
        self.context = context
        self.isClient = isClient
    }

    /// A server configuration: `certificate` (a PEM chain) and its `key` (PEM); with
    /// `clientCA` (PEM), clients must present a certificate it signed.
    public static func server(certificate: String, key: String, clientCA: String? = nil) throws -> WireTLS {
        let chain = try load(certificate, "certificate") { try NIOSSLCertificate.fromPEMFile($0) }
        let privateKey = try load(key, "private key") { try NIOSSLPrivateKey(file: $0, format: .pem) }
        var configuration: TLSConfiguration
        if let clientCA {
            let roots = try load(clientCA, "client CA certificate") { try NIOSSLCertificate.fromPEMFile($0) }
            configuration = .makeServerConfigurationWithMTLS(certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(privateKey),
                                                             trustRoots: .certificates(roots))
        } else {
            configuration = .makeServerConfiguration(certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(privateKey))
        }
        configuration.minimumTLSVersion = .tlsv12
        return try make(configuration, isClient: false, what: certificate)
    }

    /// A client configuration: servers are verified against `ca` (PEM; nil: the system's
    /// roots); with `certificate` and `key`, it presents them (mutual TLS).
    public static func client(ca: String?, certificate: String? = nil, key: String? = nil) throws -> WireTLS {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.minimumTLSVersion = .tlsv12
        if let ca {
            configuration.trustRoots = .certificates(try load(ca, "CA certificate") { try NIOSSLCertificate.fromPEMFile($0) })
        }
        switch (certificate, key) {
        case let (certificate?, key?):
            configuration.certificateChain = try load(certificate, "certificate") { try NIOSSLCertificate.fromPEMFile($0) }.map { .certificate($0) }
            configuration.privateKey = .privateKey(try load(key, "private key") { try NIOSSLPrivateKey(file: $0, format: .pem) })
        case (nil, nil): break
        default: throw WireError(.invalidArgument, "a client certificate needs its key, and a key its certificate")
        }
        return try make(configuration, isClient: true, what: ca ?? "the system's roots")
    }

    /// Adds the server side of TLS to a new connection's pipeline (first, before framing).
    public func addServerHandler(to channel: any Channel) throws {
        try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: context))
    }

    /// `addServerHandler` as a closure (for the admin port's `secure`).
    public var serverSetup: @Sendable (any Channel) throws -> Void {
        let tls = self
        return { try tls.addServerHandler(to: $0) }
    }

    /// Adds the client side of TLS for a connection to `host` (first, before framing).
    func addClientHandler(to channel: any Channel, host: String) throws {
        // SNI and name checks take host names; an address is checked against the certificate's IP entries.
        let isAddress = (try? SocketAddress(ipAddress: host, port: 0)) != nil
        try channel.pipeline.syncOperations.addHandler(try NIOSSLClientHandler(context: context, serverHostname: isAddress ? nil : host))
    }

    private static func load<T>(_ path: String, _ what: String, _ read: (String) throws -> T) throws -> T {
        do { return try read(path) } catch {
            throw WireError(.invalidArgument, "\(path): cannot load the TLS \(what) (\(error)); expected a PEM file")
        }
    }

    private static func make(_ configuration: TLSConfiguration, isClient: Bool, what: String) throws -> WireTLS {
        do { return WireTLS(context: try NIOSSLContext(configuration: configuration), isClient: isClient) } catch {
            throw WireError(.invalidArgument, "\(what): the TLS configuration was refused (\(error)): does the key match the certificate?")
        }
    }
}
