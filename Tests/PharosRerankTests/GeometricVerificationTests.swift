import Foundation
import PharosVectors
import Testing
@testable import PharosRerank

/// Geometric verification on pairs whose true transform is known: a photo's keypoints and a
/// second view made by warping them (with pixel noise, descriptor noise, features lost and
/// features of something else added), against pairs of unrelated photos.
@Suite struct GeometricVerificationTests {
    static let width = 512.0, height = 384.0, dimension = 40

    static func unit(_ values: [Float]) -> [Float] {
        let norm = values.reduce(0) { $0 + $1 * $1 }.squareRoot()
        return norm > 0 ? values.map { $0 / norm } : values
    }

    static func gaussian(_ rng: inout SplitMix64) -> Double {
        let u = Double(rng.next() >> 11) / Double(1 << 53), v = Double(rng.next() >> 11) / Double(1 << 53)
        return (-2 * log(Swift.max(u, 1e-300))).squareRoot() * cos(2 * .pi * v)
    }

    static func uniform(_ rng: inout SplitMix64) -> Double { Double(rng.next() >> 11) / Double(1 << 53) }

    /// `count` keypoints spread over the image, random unit descriptors.
    static func photo(count: Int, seed: UInt64) -> VerificationFeatures {
        var rng = SplitMix64(seed: seed)
        var x: [Float] = [], y: [Float] = [], descriptors: [Float] = []
        for _ in 0..<count {
            x.append(Float(uniform(&rng) * width))
            y.append(Float(uniform(&rng) * height))
            descriptors += unit((0..<dimension).map { _ in Float(gaussian(&rng)) })
        }
        return VerificationFeatures(x: x, y: y, descriptors: descriptors, dimension: dimension)!
    }

    /// A second view of `photo` through `transform`: `kept` of its keypoints (those landing in
    /// the frame), moved by up to `pixelNoise`, descriptors perturbed by `descriptorNoise`,
    /// plus `clutter` keypoints of other things; shuffled. Returns the view and, for each of
    /// its keypoints, the photo keypoint it came from (nil for clutter).
    static func view(of photo: VerificationFeatures, through transform: PlaneTransform, kept: Int, pixelNoise: Double,
                     descriptorNoise: Double, clutter: Int, seed: UInt64) -> (VerificationFeatures, [Int?]) {
        var rng = SplitMix64(seed: seed)
        var points: [(x: Float, y: Float, descriptor: [Float], origin: Int?)] = []
        for i in 0..<photo.count where points.count < kept {
            let (tx, ty) = transform.apply(Double(photo.x[i]), Double(photo.y[i]))
            guard (0..<width).contains(tx), (0..<height).contains(ty) else { continue }
            let descriptor = unit((0..<dimension).map { photo.descriptors[i * dimension + $0] + Float(descriptorNoise * gaussian(&rng)) })
            points.append((Float(tx + pixelNoise * (2 * uniform(&rng) - 1)), Float(ty + pixelNoise * (2 * uniform(&rng) - 1)), descriptor, i))
        }
        let other = Self.photo(count: clutter, seed: seed ^ 0xC1)
        for j in 0..<clutter {
            points.append((other.x[j], other.y[j], Array(other.descriptors[j * dimension..<(j + 1) * dimension]), nil))
        }
        points.shuffle(using: &rng)
        let features = VerificationFeatures(x: points.map(\.x), y: points.map(\.y), descriptors: points.flatMap(\.descriptor), dimension: dimension)!
        return (features, points.map(\.origin))
    }

    static let viewpoint = PlaneTransform(a: 0.82, b: 0.18, c: -0.12, d: 0.9, tx: 60, ty: 25)

    @Test func theMinimalModelsGoThroughTheirPointsAndDegenerateSamplesHaveNone() throws {
        let truth = PlaneTransform.similarity(scale: 1.3, angle: 0.4, tx: -20, ty: 7)
        let p = [(10.0, 20.0), (200.0, 50.0), (90.0, 300.0)]
        let q = p.map { truth.apply($0.0, $0.1) }
        let similarity = try #require(PlaneTransform.similarity(through: p[0], p[1], to: (q[0].x, q[0].y), (q[1].x, q[1].y)))
        let affine = try #require(PlaneTransform.affine(through: p, to: p.map { Self.viewpoint.apply($0.0, $0.1) }).map { $0 })
        for (a, b) in [(similarity, truth), (affine, Self.viewpoint)] {
            for (u, v) in [(a.a, b.a), (a.b, b.b), (a.c, b.c), (a.d, b.d), (a.tx, b.tx), (a.ty, b.ty)] { #expect(abs(u - v) < 1e-9) }
        }
        #expect(PlaneTransform.similarity(through: (5, 5), (5, 5), to: (0, 0), (1, 1)) == nil)
        #expect(PlaneTransform.affine(through: [(0, 0), (1, 1), (2, 2)], to: [(0, 0), (1, 0), (0, 1)]) == nil)
        // Least squares through many noisy points comes back to the truth.
        var rng = SplitMix64(seed: 4)
        let many = (0..<200).map { _ in (Self.uniform(&rng) * 500, Self.uniform(&rng) * 400) }
        let moved = many.map { p in let m = Self.viewpoint.apply(p.0, p.1); return (m.x + Self.gaussian(&rng), m.y + Self.gaussian(&rng)) }
        let fitted = try #require(PlaneTransform.leastSquares(.affine, from: many, to: moved))
        let corner = fitted.apply(500, 400), expected = Self.viewpoint.apply(500, 400)
        #expect(abs(corner.x - expected.x) < 1 && abs(corner.y - expected.y) < 1)
        #expect(!PlaneTransform(a: -1, b: 0, c: 0, d: 1, tx: 0, ty: 0).isPlausible(maximumAreaRatio: 25))   // mirrored
        #expect(!PlaneTransform(a: 0.1, b: 0, c: 0, d: 0.1, tx: 0, ty: 0).isPlausible(maximumAreaRatio: 25))   // areas / 100
        #expect(!PlaneTransform(a: 1, b: 30, c: 0, d: 1, tx: 0, ty: 0).isPlausible(maximumAreaRatio: 25))   // a shear of area 1
        #expect(Self.viewpoint.isPlausible(maximumAreaRatio: 25))
    }

    @Test func aWarpedViewVerifiesWithItsTrueCorrespondencesAndModel() throws {
        let parameters = VerificationParameters()
        for model in VerificationParameters.Model.allCases {
            var p = parameters
            p.model = model
            let truth = model == .affine ? Self.viewpoint : PlaneTransform.similarity(scale: 0.75, angle: -0.3, tx: 120, ty: 90)
            let photo = Self.photo(count: 400, seed: 1)
            let (second, origin) = Self.view(of: photo, through: truth, kept: 150, pixelNoise: 3, descriptorNoise: 0.03, clutter: 250, seed: 2)
            let result = GeometricVerification.verify(photo, second, parameters: p)
            let transform = try #require(result.transform, "\(model): no model")
            // Most true correspondences found, every inlier one of them, mapped within the threshold.
            #expect(result.inliers.count >= 120, "\(model): \(result.inliers.count) inliers of \(result.matches.count) matches")
            #expect(result.inliers.allSatisfy { origin[$0.candidate] == $0.query }, "\(model): an inlier that is not a true correspondence")
            for m in result.inliers {
                let (x, y) = transform.apply(Double(photo.x[m.query]), Double(photo.y[m.query]))
                #expect(hypot(x - Double(second.x[m.candidate]), y - Double(second.y[m.candidate])) <= Double(p.threshold))
            }
            // The model is the true one: the image's corners land within 4 pixels of theirs.
            for (cx, cy) in [(0.0, 0.0), (Self.width, 0), (0, Self.height), (Self.width, Self.height)] {
                let (fx, fy) = transform.apply(cx, cy), (tx, ty) = truth.apply(cx, cy)
                #expect(hypot(fx - tx, fy - ty) < 4, "\(model): corner (\(cx), \(cy)) at (\(fx), \(fy)), truly (\(tx), \(ty))")
            }
        }
    }

    /// RANSAC itself, at 30% inliers among correspondences of which 70% go anywhere: the true
    /// model and exactly its inliers, not the first sample's or a refit of all of them.
    @Test func ransacFindsTheModelAmongMostlyWrongCorrespondences() throws {
        var rng = SplitMix64(seed: 21)
        var source: [(Double, Double)] = [], target: [(Double, Double)] = [], truly: Set<Int> = []
        for i in 0..<300 {
            let p = (Self.uniform(&rng) * Self.width, Self.uniform(&rng) * Self.height)
            source.append(p)
            if i % 10 < 3 {
                let q = Self.viewpoint.apply(p.0, p.1)
                target.append((q.x + Self.uniform(&rng) * 4 - 2, q.y + Self.uniform(&rng) * 4 - 2))
                truly.insert(i)
            } else {
                target.append((Self.uniform(&rng) * Self.width, Self.uniform(&rng) * Self.height))
            }
        }
        for model in VerificationParameters.Model.allCases {
            let (transform, inliers) = try #require(GeometricVerification.ransac(from: source, to: target, parameters: VerificationParameters(model: model)))
            let found = Set(inliers)
            // Every true correspondence found (an affine truth: the similarity gets most), and
            // wrong ones only where they fall within 16 pixels of the model by chance (few).
            #expect(found.intersection(truly).count >= (model == .affine ? 90 : 45), "\(model): \(found.intersection(truly).count) of 90")
            #expect(found.subtracting(truly).count <= 3, "\(model): \(found.subtracting(truly).count) wrong inliers")
            if model == .affine {
                let (x, y) = transform.apply(Self.width, Self.height), (tx, ty) = Self.viewpoint.apply(Self.width, Self.height)
                #expect(hypot(x - tx, y - ty) < 3)
            }
        }
        // Too few correspondences for any check of a model: none.
        #expect(GeometricVerification.ransac(from: Array(source.prefix(3)), to: Array(target.prefix(3)), parameters: VerificationParameters()) == nil)
    }

    /// The 8-lane mutual-nearest-neighbour pass against a plain double loop, on sizes around
    /// the lane width and with ties (descriptors drawn from a few values).
    @Test func mutualNearestNeighboursAreThoseOfAPlainSearch() {
        var rng = SplitMix64(seed: 33)
        for trial in 0..<60 {
            let nq = 1 + Int(rng.next() % 20), nc = 1 + Int(rng.next() % 20), d = 1 + Int(rng.next() % 5)
            func features(_ n: Int) -> VerificationFeatures {
                VerificationFeatures(x: (0..<n).map(Float.init), y: (0..<n).map(Float.init),
                                     descriptors: (0..<n * d).map { _ in Float(rng.next() % 4) / 4 }, dimension: d)!
            }
            let q = features(nq), c = features(nc)
            func distance(_ i: Int, _ j: Int) -> Float {
                // Exact in floats here: quarters, at most 5 of them.
                var dot: Float = 0
                for k in 0..<d { dot += q.descriptors[i * d + k] * c.descriptors[j * d + k] }
                return q.squaredNorms[i] + c.squaredNorms[j] - 2 * dot
            }
            var expected: [GeometricVerification.Match] = []
            for i in 0..<nq {
                var best = -1, first = Float.infinity, second = Float.infinity
                for j in 0..<nc {
                    let dist = distance(i, j)
                    if dist < first { (second, first, best) = (first, dist, j) } else if dist < second { second = dist }
                }
                let nearestRow = (0..<nq).min { distance($0, best) < distance($1, best) || (distance($0, best) == distance($1, best) && $0 < $1) }!
                guard nearestRow == i, nc == 1 || Swift.max(0, first) < 0.81 * Swift.max(0, second) else { continue }
                expected.append(GeometricVerification.Match(query: i, candidate: best))
            }
            #expect(GeometricVerification.matches(q, c, ratio: 0.9) == expected, "trial \(trial): \(nq) x \(nc) x \(d)")
        }
    }

    @Test func inlierCountsSeparateTrueViewsFromUnrelatedPhotos() {
        let parameters = VerificationParameters()
        var trueCounts: [Int] = [], falseCounts: [Int] = []
        for s in 0..<8 {
            let seed = UInt64(100 + s)
            let photo = Self.photo(count: 500, seed: seed)
            let angle = Double(s - 4) * 0.08
            let truth = PlaneTransform(a: 0.85 * cos(angle), b: -0.85 * sin(angle) + 0.1, c: 0.85 * sin(angle), d: 0.85 * cos(angle), tx: 40, ty: 30)
            let (second, _) = Self.view(of: photo, through: truth, kept: 60, pixelNoise: 4, descriptorNoise: 0.05, clutter: 440, seed: seed + 50)
            trueCounts.append(GeometricVerification.verify(photo, second, parameters: parameters).inliers.count)
            let unrelated = Self.photo(count: 500, seed: seed + 1000)
            falseCounts.append(GeometricVerification.verify(photo, unrelated, parameters: parameters).inliers.count)
        }
        #expect(trueCounts.min()! >= parameters.minimumInliers, "true views: \(trueCounts)")
        #expect(falseCounts.max()! < parameters.minimumInliers, "unrelated photos: \(falseCounts)")
    }

    @Test func theShortlistIsReorderedByInliersTheSameOnAnyThreadCount() {
        let parameters = VerificationParameters()
        let query = Self.photo(count: 300, seed: 7)
        // Positions 1 and 3 are views of the query (3 shares more of it), the rest unrelated, 4 has none.
        var candidates: [VerificationFeatures?] = (0..<6).map { Self.photo(count: 300, seed: 200 + UInt64($0)) }
        candidates[1] = Self.view(of: query, through: Self.viewpoint, kept: 40, pixelNoise: 2, descriptorNoise: 0.03, clutter: 200, seed: 8).0
        candidates[3] = Self.view(of: query, through: Self.viewpoint, kept: 120, pixelNoise: 2, descriptorNoise: 0.03, clutter: 150, seed: 9).0
        candidates[4] = nil
        let one = GeometricVerification.rerank(query: query, candidates: candidates, parameters: parameters, threads: 1)
        let two = GeometricVerification.rerank(query: query, candidates: candidates, parameters: parameters, threads: 2)
        #expect(one.map(\.index) == [3, 1, 0, 2, 4, 5])
        #expect(one.map(\.index) == two.map(\.index) && one.map(\.inliers) == two.map(\.inliers))
        #expect(one[2...].allSatisfy { $0.inliers < parameters.minimumInliers }, "\(one)")
        #expect(one.first { $0.index == 4 }?.inliers == 0)
        // The same seed draws the same samples: the same inliers again.
        let again = GeometricVerification.verify(query, candidates[1]!, parameters: parameters)
        #expect(again == GeometricVerification.verify(query, candidates[1]!, parameters: parameters))
    }

    @Test func theFusionRuleOrdersVerifiedCandidatesFirst() {
        let order = GeometricVerification.order(inliers: [3, 40, 12, 0, 40, 11], minimumInliers: 12)
        #expect(order.map(\.index) == [1, 4, 2, 0, 3, 5])
    }

    @Test func damagedOrMismatchedFeaturesVerifyNothingAndCrashNothing() {
        let parameters = VerificationParameters()
        let photo = Self.photo(count: 50, seed: 11)
        #expect(VerificationFeatures(x: [1], y: [], descriptors: [], dimension: 40) == nil)
        #expect(VerificationFeatures(x: [1], y: [1], descriptors: [1, 2], dimension: 40) == nil)
        #expect(VerificationFeatures(x: [], y: [], descriptors: [], dimension: 0) == nil)
        let empty = VerificationFeatures(x: [], y: [], descriptors: [], dimension: 40)!
        let otherDimension = VerificationFeatures(x: [1, 2], y: [3, 4], descriptors: [Float](repeating: 0.5, count: 8), dimension: 4)!
        let nan = VerificationFeatures(x: photo.x.map { _ in .nan }, y: photo.y, descriptors: photo.descriptors.map { _ in .nan }, dimension: 40)!
        let farAway = VerificationFeatures(x: photo.x.map { _ in .infinity }, y: photo.y, descriptors: photo.descriptors, dimension: 40)!
        for other in [empty, otherDimension, nan, farAway] {
            #expect(GeometricVerification.verify(photo, other, parameters: parameters).inliers.isEmpty)
            #expect(GeometricVerification.verify(other, photo, parameters: parameters).inliers.isEmpty)
        }
        // Every keypoint on one spot: no plausible model however many matches agree.
        let spot = VerificationFeatures(x: photo.x.map { _ in 5 }, y: photo.y.map { _ in 5 }, descriptors: photo.descriptors, dimension: 40)!
        #expect(GeometricVerification.verify(photo, spot, parameters: parameters).inliers.isEmpty)
    }

    @Test func settingsOutsideTheirLimitsAreNamed() {
        #expect(VerificationParameters().problem() == nil)
        let bad: [(VerificationParameters, String)] = [
            (VerificationParameters(shortlist: 0), "shortlist"), (VerificationParameters(shortlist: 1001), "shortlist"),
            (VerificationParameters(ratio: .nan), "ratio"), (VerificationParameters(ratio: 1.5), "ratio"),
            (VerificationParameters(threshold: -1), "threshold"), (VerificationParameters(threshold: .infinity), "threshold"),
            (VerificationParameters(model: .affine, minimumInliers: 2), "inliers"), (VerificationParameters(maximumKeypoints: 1), "keypoints"),
            (VerificationParameters(maximumKeypoints: 5000), "keypoints"), (VerificationParameters(maximumIterations: 0), "iterations"),
            (VerificationParameters(confidence: 1), "confidence"),
        ]
        for (parameters, name) in bad { #expect(parameters.problem()?.hasPrefix(name) == true, "\(parameters)") }
    }
}
