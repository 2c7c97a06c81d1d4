import Foundation
import Testing
@testable import PharosRerank

@Suite struct DiffusionTests {
    /// A deterministic generator (the tests' data must not change between runs).
    struct Generator {
        var state: UInt64
        mutating func next() -> Double {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Double(state >> 11) / Double(1 << 53)
        }
    }

    /// `(I - alpha S) f = y` solved densely by Gaussian elimination with partial pivoting.
    static func denseSolve(_ s: [Double], count n: Int, start y: [Double], alpha: Double) -> [Double] {
        var a = (0..<n).map { i in (0..<n).map { j in (i == j ? 1 : 0) - alpha * s[i * n + j] } + [y[i]] }
        for column in 0..<n {
            let pivot = (column..<n).max { abs(a[$0][column]) < abs(a[$1][column]) }!
            a.swapAt(column, pivot)
            for row in column + 1 ..< n {
                let factor = a[row][column] / a[column][column]
                for c in column...n { a[row][c] -= factor * a[column][c] }
            }
        }
        var x = [Double](repeating: 0, count: n)
        for row in stride(from: n - 1, through: 0, by: -1) {
            let known = (row + 1 ..< n).reduce(0.0) { $0 + a[row][$1] * x[$1] }
            x[row] = (a[row][n] - known) / a[row][row]
        }
        return x
    }

    @Test(arguments: [0.5, 0.9, 0.99])
    func conjugateGradientMatchesADenseSolve(alpha: Double) {
        var random = Generator(state: 7)
        let n = 24
        // A sparse symmetric graph (about a quarter of the pairs), some nodes without edges.
        var weights = [Double](repeating: 0, count: n * n)
        for i in 0..<n - 2 {
            for j in i + 1 ..< n - 2 where random.next() < 0.25 {
                let w = random.next()
                weights[i * n + j] = w
                weights[j * n + i] = w
            }
        }
        let s = Diffusion.normalisedSymmetric(weights, count: n)
        let y = (0..<n).map { _ in random.next() < 0.3 ? random.next() : 0 }
        let dense = Self.denseSolve(s, count: n, start: y, alpha: alpha)
        let (f, iterations) = Diffusion.solve(s, count: n, start: y, alpha: alpha, maximumIterations: 200)
        let error = zip(f, dense).map { abs($0 - $1) }.max()!
        let scale = dense.map(abs).max()!
        #expect(error <= 1e-5 * scale, "largest difference \(error) of \(scale) after \(iterations) steps")
        // A node without edges keeps its start value: f = y there.
        #expect(abs(f[n - 1] - y[n - 1]) <= 1e-9 && abs(f[n - 2] - y[n - 2]) <= 1e-9)
    }

    /// Unit vectors at `degrees` in the x-y plane, lifted by `z` and normalised.
    static func direction(_ degrees: Double, z: Double = 0) -> [Float] {
        let r = degrees * .pi / 180
        let v = [cos(r), sin(r), z]
        let length = v.reduce(0) { $0 + $1 * $1 }.squareRoot()
        return v.map { Float($0 / length) }
    }

    /// Precision averaged over the positions of `relevant` in `ranking`.
    static func averagePrecision(_ ranking: [Int], relevant: Set<Int>) -> Double {
        var found = 0, sum = 0.0
        for (i, item) in ranking.enumerated() where relevant.contains(item) {
            found += 1
            sum += Double(found) / Double(i + 1)
        }
        return sum / Double(relevant.count)
    }

    /// Photos of one object along a path of viewpoints (an arc of 2 to 120 degrees, dense), and
    /// a tight group of distractors at -55 degrees: the distractors are closer to the query (at 0
    /// degrees) than the far half of the arc, but no step away from the arc's photos. Diffusion
    /// follows the arc and ranks every one of its photos first; the raw similarity does not.
    @Test func diffusionFollowsAPathOfViewsPastCloserDistractors() {
        let arc = stride(from: 2.0, through: 120.0, by: 3.0).map { Self.direction($0) }
        let distractors = (0..<20).map { Self.direction(-55 + Double($0 % 5) * 0.8, z: Double($0 / 5) * 0.03) }
        // The shortlist best first, as a search returns it.
        let all = arc + distractors
        let query = Self.direction(0)
        func cosine(_ v: [Float]) -> Float { zip(v, query).reduce(0) { $0 + $1.0 * $1.1 } }
        let shortlist = all.indices.sorted { cosine(all[$0]) != cosine(all[$1]) ? cosine(all[$0]) > cosine(all[$1]) : $0 < $1 }
        let relevant = Set(shortlist.indices.filter { shortlist[$0] < arc.count })
        let parameters = DiffusionParameters(shortlist: all.count, neighbours: 5, alpha: 0.99, gamma: 3)
        let ranked = Diffusion.rank(query: query, vectors: shortlist.flatMap { all[$0] }, count: all.count, parameters: parameters)

        #expect(ranked.map(\.index).sorted() == Array(0..<all.count), "every shortlist entry once")
        let before = Self.averagePrecision(Array(0..<all.count), relevant: relevant)
        let after = Self.averagePrecision(ranked.map(\.index), relevant: relevant)
        #expect(before < 0.8, "the raw order mixes the distractors in (AP \(before))")
        #expect(after == 1, "diffusion ranks the whole arc first (AP \(after))")
        #expect(zip(ranked, ranked.dropFirst()).allSatisfy { $0.score >= $1.score }, "scores best first")
    }

    /// Clustered unit vectors: `count` rows of `d` floats around `groups` centres.
    static func clustered(count: Int, d: Int, groups: Int, seed: UInt64) -> [Float] {
        var random = Generator(state: seed)
        let centres = (0..<groups * d).map { _ in random.next() - 0.5 }
        var rows: [Float] = []
        for i in 0..<count {
            let row = (0..<d).map { c in centres[(i % groups) * d + c] + 0.35 * (random.next() - 0.5) }
            let length = row.reduce(0) { $0 + $1 * $1 }.squareRoot()
            rows += row.map { Float($0 / length) }
        }
        return rows
    }

    /// The graph the ranking solves on: symmetric, mutual neighbours only (at most k per row),
    /// no self-loops, and the query's start vector on its k nearest.
    @Test func theGraphIsSymmetricMutualAndNormalised() {
        let n = 120, d = 12
        let rows = Self.clustered(count: n, d: d, groups: 6, seed: 5)
        let query = Array(rows[0..<d])
        let p = DiffusionParameters(shortlist: n, neighbours: 8, alpha: 0.99, gamma: 3)
        let (s, y) = Diffusion.graph(query: query, vectors: rows, count: n, parameters: p)
        for i in 0..<n {
            #expect(s[i * n + i] == 0, "no self-loops")
            #expect((0..<n).filter { s[i * n + $0] > 0 }.count <= 8, "at most k edges a row")
            for j in 0..<n { #expect(s[i * n + j] == s[j * n + i]) }
        }
        #expect(y.filter { $0 > 0 }.count <= 8 && y[0] > 0.999, "the query's own row is its nearest")
    }

    /// At the production cap (20 steps) on a shortlist of 200 at alpha 0.99, the ranking's head
    /// is the exact solution's: the top 20 by the dense solve, in order.
    @Test func twentyStepsRankTheHeadAsTheExactSolution() {
        let n = 200, d = 16
        let rows = Self.clustered(count: n, d: d, groups: 10, seed: 9)
        let query = Array(rows[d..<2 * d])
        let p = DiffusionParameters(shortlist: n, neighbours: 10, alpha: 0.99, gamma: 3)
        let (s, y) = Diffusion.graph(query: query, vectors: rows, count: n, parameters: p)
        let exact = Self.denseSolve(s, count: n, start: y, alpha: 0.99)
        let exactOrder = (0..<n).sorted { exact[$0] != exact[$1] ? exact[$0] > exact[$1] : $0 < $1 }
        let ranked = Diffusion.rank(query: query, vectors: rows, count: n, parameters: p).map(\.index)
        #expect(Array(ranked.prefix(20)) == Array(exactOrder.prefix(20)))
    }

    @Test func degenerateShortlistsKeepTheirOrder() {
        let p = DiffusionParameters(shortlist: 200, neighbours: 5, alpha: 0.9, gamma: 3)
        // One entry; k larger than the shortlist; rows of zeros and of infinities; a dimension mismatch.
        #expect(Diffusion.rank(query: [1, 0], vectors: [1, 0], count: 1, parameters: p).map(\.index) == [0])
        let rows: [Float] = [1, 0, 0, 0, .infinity, 1, 0.9, 0.1]
        let ranked = Diffusion.rank(query: [1, 0], vectors: rows, count: 4, parameters: p)
        #expect(ranked.map(\.index).sorted() == [0, 1, 2, 3] && ranked.allSatisfy { $0.score.isFinite })
        #expect(ranked.first(where: { $0.index == 1 })?.score == 0 && ranked.first(where: { $0.index == 2 })?.score == 0,
                "rows without a direction reach nothing")
        #expect(Diffusion.rank(query: [1, 0, 0], vectors: rows, count: 4, parameters: p).map(\.index) == [0, 1, 2, 3])
        #expect(Diffusion.rank(query: [1, 0], vectors: [], count: 0, parameters: p).isEmpty)
    }

    @Test func aQueryUnlikeEveryEntryKeepsTheShortlistOrder() {
        let rows = (0..<6).map { Self.direction(Double($0) * 10) }
        let ranked = Diffusion.rank(query: Self.direction(180), vectors: rows.flatMap { $0 }, count: rows.count, parameters: DiffusionParameters(shortlist: 200, neighbours: 5, alpha: 0.9, gamma: 3))
        #expect(ranked.map(\.index) == Array(0..<6))
        #expect(ranked.allSatisfy { $0.score == 0 })
    }

    @Test func theSameInputsGiveTheSameOrderAndScores() {
        var random = Generator(state: 3)
        let d = 16, n = 80
        let rows = (0..<n * d).map { _ in Float(random.next() - 0.5) }
        let query = (0..<d).map { _ in Float(random.next() - 0.5) }
        let p = DiffusionParameters(shortlist: n, neighbours: 10, alpha: 0.9, gamma: 3)
        let first = Diffusion.rank(query: query, vectors: rows, count: n, parameters: p)
        let second = Diffusion.rank(query: query, vectors: rows, count: n, parameters: p)
        #expect(first.map(\.index) == second.map(\.index) && first.map(\.score) == second.map(\.score))
    }
}
