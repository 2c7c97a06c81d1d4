import Foundation
import Testing
@testable import PharosEvaluation

/// The protocol against rankings worked out by hand.
@Suite struct RevisitedProtocolTests {
    static func close(_ a: Double, _ b: Double) -> Bool { abs(a - b) < 1e-9 }

    @Test func trapezoidAP() {
        // Positives at 0 and 2 of 2: (1 + 1)/2 * 1/2 + (1/2 + 2/3)/2 * 1/2.
        #expect(Self.close(RevisitedProtocol.averagePrecision(positions: [0, 2], positives: 2), 0.5 + 7.0 / 24))
        #expect(Self.close(RevisitedProtocol.averagePrecision(positions: [0, 1, 2], positives: 3), 1))
        // A positive never found (ranking too short) still counts in the recall steps.
        #expect(Self.close(RevisitedProtocol.averagePrecision(positions: [0], positives: 2), 0.5))
        // First positive at 1: (0/1 + 1/2)/2.
        #expect(Self.close(RevisitedProtocol.averagePrecision(positions: [1], positives: 1), 0.25))
        #expect(RevisitedProtocol.averagePrecision(positions: [], positives: 3) == 0)
    }

    @Test func setupsMoveEasyAndHardBetweenPositiveAndJunk() {
        let truth = RetrievalGroundTruth(queries: [.init(key: "q", easy: ["e"], hard: ["h"], junk: ["j"])])
        let ranking = [["e", "x", "h", "j"]]
        let easy = RevisitedProtocol.evaluate(ranking, truth: truth, setup: .easy)
        #expect(Self.close(easy.meanAveragePrecision, 1))              // [e, x]: h and j are junk
        let medium = RevisitedProtocol.evaluate(ranking, truth: truth, setup: .medium)
        #expect(Self.close(medium.meanAveragePrecision, 0.5 + 7.0 / 24))   // [e, x, h]
        #expect(Self.close(medium.meanPrecision[1]!, 1))
        #expect(Self.close(medium.meanPrecision[5]!, 2.0 / 3))        // k' = min(5, last positive 3)
        #expect(Self.close(medium.meanPrecision[10]!, 2.0 / 3))
        let hard = RevisitedProtocol.evaluate(ranking, truth: truth, setup: .hard)
        #expect(Self.close(hard.meanAveragePrecision, 0.25))           // [x, h]: e is junk
        #expect(hard.meanPrecision[1] == 0)
        #expect(Self.close(hard.meanPrecision[5]!, 0.5))
    }

    @Test func positivesAfterJunkCountAsIfTheJunkWereNotThere() {
        let truth = RetrievalGroundTruth(queries: [.init(key: "q", easy: ["a"], junk: ["j1", "j2"])])
        let score = RevisitedProtocol.evaluate([["j1", "j2", "a", "x"]], truth: truth, setup: .medium)
        #expect(score.meanAveragePrecision == 1)
        #expect(score.meanPrecision[1] == 1)
    }

    @Test func allJunkAndNothingFound() {
        let truth = RetrievalGroundTruth(queries: [.init(key: "q", easy: ["a"], junk: ["j1", "j2"])])
        let score = RevisitedProtocol.evaluate([["j1", "j2"]], truth: truth, setup: .medium)
        #expect(score.meanAveragePrecision == 0)
        #expect(score.meanPrecision.values.allSatisfy { $0 == 0 })
    }

    @Test func queriesWithoutPositivesAreLeftOutOfTheMeans() {
        let truth = RetrievalGroundTruth(queries: [
            .init(key: "q1", easy: ["a"]),
            .init(key: "q2", easy: [], hard: ["b"]),   // no easy positive: left out of Easy only
        ])
        let rankings = [["a", "b"], ["x", "b"]]
        let easy = RevisitedProtocol.evaluate(rankings, truth: truth, setup: .easy)
        #expect(easy.emptyQueries == 1)
        #expect(easy.averagePrecisions[1] == nil)
        #expect(easy.meanAveragePrecision == 1)
        let medium = RevisitedProtocol.evaluate(rankings, truth: truth, setup: .medium)
        #expect(medium.emptyQueries == 0)
        #expect(Self.close(medium.meanAveragePrecision, (1 + 0.25) / 2))
    }

    @Test func labelledSetsMakeTheQueryJunk() {
        let truth = RetrievalGroundTruth(labels: ["a1": "a", "a2": "a", "a3": "a", "b1": "b"], queries: ["a1", "b1"])
        let score = RevisitedProtocol.evaluate([["a1", "b1", "a2", "a3"], ["b1", "a1"]], truth: truth, setup: .easy)
        // a1: [b1, a2, a3] -> positives at 1 and 2 of 2. b1: no other b, left out.
        #expect(Self.close(score.meanAveragePrecision, 0.125 + 7.0 / 24))
        #expect(score.emptyQueries == 1)
        #expect(Recall.anyPositiveAtK(1, rankings: [["a1", "b1", "a2", "a3"], ["b1", "a1"]], truth: truth) == 0)
        #expect(Recall.anyPositiveAtK(2, rankings: [["a1", "b1", "a2", "a3"], ["b1", "a1"]], truth: truth) == 1)
    }

    @Test func recallAgainstExactNeighbours() {
        #expect(Self.close(Recall.atK(2, returned: [["a", "c"], ["x", "y"]], exact: [["a", "b"], ["y", "x"]]), 0.75))
    }

    @Test func groundTruthFilesAndTheirErrors() throws {
        let dir = NSTemporaryDirectory() + "pharos-gt-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let revisited = dir + "/r.json"
        try Data(#"{"protocol": "revisited", "queries": [{"key": "q", "easy": ["a"], "hard": ["b"], "junk": []}]}"#.utf8)
            .write(to: URL(fileURLWithPath: revisited))
        #expect(try RetrievalGroundTruth.load(revisited).queries == [.init(key: "q", easy: ["a"], hard: ["b"])])
        let labelled = dir + "/l.json"
        try RetrievalGroundTruth.saveLabelled(["x": "1", "y": "1"], queries: nil, to: labelled)
        #expect(try RetrievalGroundTruth.load(labelled) == RetrievalGroundTruth(labels: ["x": "1", "y": "1"]))
        let bad = dir + "/b.json"
        try Data(#"{"protocol": "oxford"}"#.utf8).write(to: URL(fileURLWithPath: bad))
        #expect { try RetrievalGroundTruth.load(bad) } throws: { "\($0)".contains("b.json") && "\($0)".contains("protocol") }
        try Data(#"{"protocol": "labelled", "labels": {"x": "1"}, "queries": ["z"]}"#.utf8).write(to: URL(fileURLWithPath: bad))
        #expect { try RetrievalGroundTruth.load(bad) } throws: { "\($0)".contains("\"z\" has no label") }
        // The query's crop box (the revisited files' bbx) is read; one that is no box is refused.
        try Data(#"{"protocol": "revisited", "queries": [{"key": "q", "easy": ["a"], "hard": [], "junk": [], "bbx": [1.5, 2, 30, 40.25]}]}"#.utf8)
            .write(to: URL(fileURLWithPath: revisited))
        #expect(try RetrievalGroundTruth.load(revisited).queries[0].box == [1.5, 2, 30, 40.25])
        for box in ["[1, 2, 3]", "[30, 2, 1, 40]", "[1, 2, 30, -5]"] {
            try Data(#"{"protocol": "revisited", "queries": [{"key": "q", "easy": [], "hard": [], "junk": [], "bbx": \#(box)}]}"#.utf8)
                .write(to: URL(fileURLWithPath: bad))
            #expect { try RetrievalGroundTruth.load(bad) } throws: { "\($0)".contains("b.json") && "\($0)".contains("bbx") }
        }
    }
}
