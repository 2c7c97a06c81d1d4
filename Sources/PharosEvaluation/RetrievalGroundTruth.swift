import Foundation

/// Which database images count for each query, in the revisited Oxford/Paris form (easy, hard
/// and junk images per query) or as labels (same label = positive).
///
/// JSON (`pharos eval --ground-truth FILE`):
/// ```json
/// { "protocol": "revisited",
///   "queries": [ { "key": "all_souls_000013.jpg", "easy": ["..."], "hard": ["..."], "junk": ["..."],
///                  "bbx": [136.5, 34.1, 648.5, 955.7] } ] }           // bbx optional: the query's crop
/// { "protocol": "labelled",
///   "labels": { "photos/a1.jpg": "a", "photos/a2.jpg": "a", "photos/b1.jpg": "b" },
///   "queries": ["photos/a1.jpg", "photos/b1.jpg"] }          // optional: default every key
/// ```
/// `Scripts/convert-revisited-gnd.py` writes the first form from the official `gnd_*.pkl` files.
public struct RetrievalGroundTruth: Sendable, Equatable {
    /// One query's relevant images.
    public struct Query: Codable, Sendable, Equatable {
        /// The query's key.
        public var key: String
        /// Easy positives.
        public var easy: [String]
        /// Hard positives.
        public var hard: [String]
        /// Images that neither count for nor against (removed from the ranking).
        public var junk: [String]
        /// The region of the query image to describe (x1, y1, x2, y2 in pixels of the original
        /// image, the revisited files' `bbx`): the protocol crops queries to it.
        public var box: [Double]?

        enum CodingKeys: String, CodingKey { case key, easy, hard, junk, box = "bbx" }

        /// A query's ground truth.
        public init(key: String, easy: [String], hard: [String] = [], junk: [String] = [], box: [Double]? = nil) {
            self.key = key
            self.easy = easy
            self.hard = hard
            self.junk = junk
            self.box = box
        }

        /// The crop box's problem, if it has one (not four finite numbers, or empty).
        var boxProblem: String? {
            guard let box else { return nil }
            guard box.count == 4, box.allSatisfy(\.isFinite) else { return "bbx \(box): expected 4 finite numbers x1, y1, x2, y2" }
            guard box[0] < box[2], box[1] < box[3], box[2] > 0, box[3] > 0 else {
                return "bbx \(box): expected x1 < x2 and y1 < y2, not wholly left of or above the image"
            }
            return nil
        }
    }

    /// The queries, in file order.
    public var queries: [Query]
    /// Whether the file was in the labelled form (one setup; the query itself is junk).
    public var labelled: Bool

    /// Ground truth from its queries.
    public init(queries: [Query], labelled: Bool = false) {
        self.queries = queries
        self.labelled = labelled
    }

    /// Labelled ground truth: for each query key, every other key with the same label is an
    /// (easy) positive and the query itself is junk.
    public init(labels: [String: String], queries: [String]? = nil) {
        var byLabel: [String: [String]] = [:]
        for (key, label) in labels.sorted(by: { $0.key < $1.key }) { byLabel[label, default: []].append(key) }
        self.queries = (queries ?? labels.keys.sorted()).map { key in
            let label = labels[key]
            return Query(key: key, easy: label.map { byLabel[$0]!.filter { $0 != key } } ?? [], junk: [key])
        }
        labelled = true
    }

    private struct File: Codable {
        var protocol_: String
        var queries: [Query]?
        var labels: [String: String]?
        var labelledQueries: [String]?
        enum CodingKeys: String, CodingKey { case protocol_ = "protocol", queries, labels }
        init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            protocol_ = try c.decode(String.self, forKey: .protocol_)
            labels = try c.decodeIfPresent([String: String].self, forKey: .labels)
            if protocol_ == "labelled" {
                labelledQueries = try c.decodeIfPresent([String].self, forKey: .queries)
            } else {
                queries = try c.decodeIfPresent([Query].self, forKey: .queries)
            }
        }
        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(protocol_, forKey: .protocol_)
            try c.encodeIfPresent(labels, forKey: .labels)
            if let queries { try c.encode(queries, forKey: .queries) } else { try c.encodeIfPresent(labelledQueries, forKey: .queries) }
        }
        init(protocol_: String, queries: [Query]?, labels: [String: String]?, labelledQueries: [String]?) {
            self.protocol_ = protocol_
            self.queries = queries
            self.labels = labels
            self.labelledQueries = labelledQueries
        }
    }

    /// Reads a ground-truth file; errors name the file and the field.
    public static func load(_ path: String) throws -> RetrievalGroundTruth {
        guard let data = FileManager.default.contents(atPath: path) else { throw EvaluationError(path: path, problem: "cannot read the file") }
        let file: File
        do { file = try JSONDecoder().decode(File.self, from: data) } catch {
            throw EvaluationError(path: path, problem: "not a ground-truth file: \(error)")
        }
        switch file.protocol_ {
        case "revisited":
            guard let queries = file.queries, !queries.isEmpty else { throw EvaluationError(path: path, problem: "\"queries\" is missing or empty") }
            for query in queries {
                if let problem = query.boxProblem { throw EvaluationError(path: path, problem: "query \(query.key.debugDescription): \(problem)") }
            }
            return RetrievalGroundTruth(queries: queries)
        case "labelled":
            guard let labels = file.labels, !labels.isEmpty else { throw EvaluationError(path: path, problem: "\"labels\" is missing or empty") }
            if let missing = file.labelledQueries?.first(where: { labels[$0] == nil }) {
                throw EvaluationError(path: path, problem: "query \(missing.debugDescription) has no label")
            }
            return RetrievalGroundTruth(labels: labels, queries: file.labelledQueries)
        default:
            throw EvaluationError(path: path, problem: "protocol = \(file.protocol_.debugDescription), expected \"revisited\" or \"labelled\"")
        }
    }

    /// Writes the labelled form.
    public static func saveLabelled(_ labels: [String: String], queries: [String]?, to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(File(protocol_: "labelled", queries: nil, labels: labels, labelledQueries: queries))
            .write(to: URL(fileURLWithPath: path), options: .atomic)
    }
}

/// A ground-truth or ranking file that cannot be used.
public struct EvaluationError: Error, CustomStringConvertible, Equatable {
    /// The file.
    public var path: String
    /// What is wrong.
    public var problem: String
    public var description: String { "\(path): \(problem)" }
}
