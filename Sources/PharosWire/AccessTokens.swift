import Foundation

/// Bearer tokens and the roles they grant, checked by a `WireServer` on every request.
///
/// Three roles, each including the ones before it: `read` (searches, fetches, statistics,
/// health, the schema, the cluster status), `write` (also upserts and deletes) and `admin`
/// (everything: trained state, drops, bucket moves, adding and removing nodes). `Hello` needs
/// no token, so a client can learn the protocol version first. Tokens are compared in constant
/// time, and never logged.
///
/// The file (`--tokens FILE`) has one `ROLE TOKEN` pair per line; `#` starts a comment. A
/// token is at least 16 characters of printable ASCII without spaces.
public struct AccessTokens: Sendable {
    /// What a token may do; each role includes the ones before it.
    public enum Role: Int, Sendable, Comparable, CaseIterable, CustomStringConvertible {
        case read = 1, write, admin

        public static func < (a: Role, b: Role) -> Bool { a.rawValue < b.rawValue }

        public var description: String {
            switch self {
            case .read: return "read"
            case .write: return "write"
            case .admin: return "admin"
            }
        }
    }

    /// Shortest token accepted.
    public static let minimumTokenLength = 16
    private let grants: [(token: [UInt8], role: Role)]

    /// Tokens and their roles; throws for a token that is too short, repeated, or not
    /// printable ASCII.
    public init(_ grants: [(token: String, role: Role)]) throws {
        var seen = Set<String>()
        for (i, grant) in grants.enumerated() {
            if let problem = Self.problem(with: grant.token) { throw WireError(.invalidArgument, "token \(i + 1): \(problem)") }
            guard seen.insert(grant.token).inserted else { throw WireError(.invalidArgument, "token \(i + 1) is given twice") }
        }
        guard !grants.isEmpty else { throw WireError(.invalidArgument, "no tokens given") }
        self.grants = grants.map { (Array($0.token.utf8), $0.role) }
    }

    /// Reads a tokens file; errors name the file and line.
    public static func load(_ path: String) throws -> AccessTokens {
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw WireError(.invalidArgument, "\(path): cannot read the tokens file (\(error.localizedDescription))")
        }
        var grants: [(String, Role)] = []
        for (number, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" }).map(String.init)
            if fields.isEmpty { continue }
            guard fields.count == 2 else {
                throw WireError(.invalidArgument, "\(path):\(number + 1): expected ROLE TOKEN, found \(fields.count) fields")
            }
            guard let role = Role.allCases.first(where: { $0.description == fields[0] }) else {
                throw WireError(.invalidArgument, "\(path):\(number + 1): role \(fields[0].debugDescription): expected read, write or admin")
            }
            if let problem = problem(with: fields[1]) { throw WireError(.invalidArgument, "\(path):\(number + 1): \(problem)") }
            grants.append((fields[1], role))
        }
        guard !grants.isEmpty else { throw WireError(.invalidArgument, "\(path): no tokens (lines of ROLE TOKEN)") }
        do { return try AccessTokens(grants) } catch let error as WireError {
            throw WireError(.invalidArgument, "\(path): \(error.message)")
        }
    }

    /// Reads a file holding one token (a client's, as `--token-file` names): its first
    /// non-empty line, trimmed.
    public static func readToken(_ path: String) throws -> String {
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw WireError(.invalidArgument, "\(path): cannot read the token file (\(error.localizedDescription))")
        }
        guard let token = text.split(whereSeparator: \.isNewline).map({ $0.trimmingCharacters(in: .whitespaces) }).first(where: { !$0.isEmpty }) else {
            throw WireError(.invalidArgument, "\(path): the token file is empty")
        }
        if let problem = problem(with: token) { throw WireError(.invalidArgument, "\(path): \(problem)") }
        return token
    }

    static func problem(with token: String) -> String? {
        if token.utf8.count < minimumTokenLength {
            return "a token of \(token.utf8.count) characters; at least \(minimumTokenLength) expected"
        }
        if token.utf8.contains(where: { $0 <= 0x20 || $0 >= 0x7F }) { return "a token must be printable ASCII without spaces" }
        return nil
    }

    /// The role `token` grants, if any (constant time in the token's content).
    public func role(of token: String) -> Role? {
        let given = Array(token.utf8)
        var found: Role?
        for grant in grants where Self.constantTimeEqual(grant.token, given) { found = grant.role }
        return found
    }

    /// How many tokens each role has (for the start-up log; never the tokens).
    public var counts: [Role: Int] { Dictionary(grouping: grants, by: \.role).mapValues(\.count) }

    /// Why `envelope` may not be served, or nil when its token grants what it needs.
    public func refusal(for envelope: Envelope) -> WireError? {
        guard let needed = envelope.body.requiredRole else { return nil }
        guard !envelope.authToken.isEmpty else {
            return WireError(.unauthorized, "\(envelope.body.name) needs a token with the \(needed) role; the request has none (auth_token)",
                             requestID: envelope.requestID)
        }
        guard let role = role(of: envelope.authToken) else {
            return WireError(.unauthorized, "\(envelope.body.name): the token is not one this server knows", requestID: envelope.requestID)
        }
        guard role >= needed else {
            return WireError(.unauthorized, "\(envelope.body.name) needs the \(needed) role; the token has \(role)", requestID: envelope.requestID)
        }
        return nil
    }

    private static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        var difference = UInt8(truncatingIfNeeded: a.count ^ b.count)
        for i in 0..<Swift.max(a.count, b.count) {
            difference |= (i < a.count ? a[i] : 0) ^ (i < b.count ? b[i] : 0)
        }
        return difference == 0
    }
}

extension WireMessage {
    /// The role a request needs, or nil for `Hello` (answered to anyone).
    public var requiredRole: AccessTokens.Role? {
        switch self {
        case .hello: return nil
        case .search, .fetch, .stats, .health, .schema, .clusterStatus: return .read
        // Codes are stored as sent, like a bucket move's pages: the coordinator's (admin) to send.
        case let .upsert(u) where !u.encoded.isEmpty || u.trainedVersion != 0: return .admin
        case .upsert, .delete: return .write
        default: return .admin
        }
    }
}
