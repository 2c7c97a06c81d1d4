import Foundation

/// A map of the image plane, `(x, y) -> (a x + b y + tx, c x + d y + ty)`: the model geometric
/// verification fits between a query's keypoints and a candidate's (an affine map, or a
/// similarity when `a = d` and `b = -c`).
public struct PlaneTransform: Sendable, Equatable {
    /// The linear part, row-major: `[[a, b], [c, d]]`.
    public var a: Double, b: Double, c: Double, d: Double
    /// The translation.
    public var tx: Double, ty: Double

    /// A map from its parts.
    public init(a: Double, b: Double, c: Double, d: Double, tx: Double, ty: Double) {
        (self.a, self.b, self.c, self.d, self.tx, self.ty) = (a, b, c, d, tx, ty)
    }

    /// The identity.
    public static let identity = PlaneTransform(a: 1, b: 0, c: 0, d: 1, tx: 0, ty: 0)

    /// A similarity: scale `scale`, rotation `angle` (radians, counter-clockwise), then `(tx, ty)`.
    public static func similarity(scale: Double, angle: Double, tx: Double, ty: Double) -> PlaneTransform {
        PlaneTransform(a: scale * cos(angle), b: -scale * sin(angle), c: scale * sin(angle), d: scale * cos(angle), tx: tx, ty: ty)
    }

    /// The image of `(x, y)`.
    public func apply(_ x: Double, _ y: Double) -> (x: Double, y: Double) {
        (a * x + b * y + tx, c * x + d * y + ty)
    }

    /// The determinant of the linear part (the factor areas are scaled by; negative: mirrored).
    public var determinant: Double { a * d - b * c }

    /// Whether the map is one two photos of one scene can be related by: finite, not mirrored,
    /// not shrinking or growing areas by more than `maximumAreaRatio`, and not stretching one
    /// direction more than `maximumAnisotropy` times another (the ratio of the linear part's
    /// singular values: a map fitted to nearly collinear points is a huge shear).
    public func isPlausible(maximumAreaRatio: Double, maximumAnisotropy: Double = 8) -> Bool {
        let det = determinant
        guard [a, b, c, d, tx, ty].allSatisfy(\.isFinite), det > 1 / maximumAreaRatio, det < maximumAreaRatio else { return false }
        // s1^2 and s2^2 are the roots of t^2 - (a^2 + b^2 + c^2 + d^2) t + det^2.
        let f = a * a + b * b + c * c + d * d
        let root = (Swift.max(0, f * f - 4 * det * det)).squareRoot()
        let large = (f + root) / 2, small = (f - root) / 2
        return large <= maximumAnisotropy * maximumAnisotropy * small
    }

    /// The similarity through two correspondences (`p1 -> q1`, `p2 -> q2`), nil when the two
    /// source points coincide. In complex numbers: `q = s p + t` with `s = (q1 - q2) / (p1 - p2)`.
    static func similarity(through p1: (Double, Double), _ p2: (Double, Double), to q1: (Double, Double), _ q2: (Double, Double)) -> PlaneTransform? {
        let (px, py) = (p1.0 - p2.0, p1.1 - p2.1), (qx, qy) = (q1.0 - q2.0, q1.1 - q2.1)
        let norm = px * px + py * py
        guard norm > 1e-9 else { return nil }
        // s = q / p = q * conj(p) / |p|^2
        let sr = (qx * px + qy * py) / norm, si = (qy * px - qx * py) / norm
        let tx = q1.0 - (sr * p1.0 - si * p1.1), ty = q1.1 - (si * p1.0 + sr * p1.1)
        return PlaneTransform(a: sr, b: -si, c: si, d: sr, tx: tx, ty: ty)
    }

    /// The affine map through three correspondences, nil when the source points are collinear.
    static func affine(through p: [(Double, Double)], to q: [(Double, Double)]) -> PlaneTransform? {
        guard p.count == 3, q.count == 3 else { return nil }
        // Relative to the first point: [u1 v1; u2 v2] [a c; b d] = [du1 dv1; du2 dv2].
        let (u1, v1) = (p[1].0 - p[0].0, p[1].1 - p[0].1), (u2, v2) = (p[2].0 - p[0].0, p[2].1 - p[0].1)
        let det = u1 * v2 - v1 * u2
        let scale = (u1 * u1 + v1 * v1) * (u2 * u2 + v2 * v2)
        guard scale > 0, det * det > 1e-12 * scale else { return nil }
        let (x1, y1) = (q[1].0 - q[0].0, q[1].1 - q[0].1), (x2, y2) = (q[2].0 - q[0].0, q[2].1 - q[0].1)
        let a = (x1 * v2 - x2 * v1) / det, b = (u1 * x2 - u2 * x1) / det
        let c = (y1 * v2 - y2 * v1) / det, d = (u1 * y2 - u2 * y1) / det
        return PlaneTransform(a: a, b: b, c: c, d: d, tx: q[0].0 - (a * p[0].0 + b * p[0].1), ty: q[0].1 - (c * p[0].0 + d * p[0].1))
    }

    /// The least-squares map of `kind` through the correspondences `p[i] -> q[i]` (at least
    /// its minimal sample), nil when they are degenerate (coincident or collinear points).
    static func leastSquares(_ kind: VerificationParameters.Model, from p: [(Double, Double)], to q: [(Double, Double)]) -> PlaneTransform? {
        let n = Double(p.count)
        guard p.count == q.count, p.count >= kind.sampleSize else { return nil }
        // Centred first: the normal equations of pixel coordinates in the hundreds lose digits.
        let (pcx, pcy) = (p.reduce(0) { $0 + $1.0 } / n, p.reduce(0) { $0 + $1.1 } / n)
        let (qcx, qcy) = (q.reduce(0) { $0 + $1.0 } / n, q.reduce(0) { $0 + $1.1 } / n)
        var sxx = 0.0, sxy = 0.0, syy = 0.0, xu = 0.0, yu = 0.0, xv = 0.0, yv = 0.0
        for i in p.indices {
            let (x, y) = (p[i].0 - pcx, p[i].1 - pcy), (u, v) = (q[i].0 - qcx, q[i].1 - qcy)
            sxx += x * x; sxy += x * y; syy += y * y
            xu += x * u; yu += y * u; xv += x * v; yv += y * v
        }
        let linear: (a: Double, b: Double, c: Double, d: Double)
        switch kind {
        case .similarity:
            // q = s p in complex numbers: s = sum(conj(p) q) / sum(|p|^2).
            let norm = sxx + syy
            guard norm > 1e-9 else { return nil }
            let sr = (xu + yv) / norm, si = (xv - yu) / norm
            linear = (sr, -si, si, sr)
        case .affine:
            // [sxx sxy; sxy syy] [a; b] = [xu; yu], and the same for (c, d) with v.
            let det = sxx * syy - sxy * sxy
            guard det > 1e-12 * Swift.max(1, (sxx + syy) * (sxx + syy)) else { return nil }
            linear = ((xu * syy - yu * sxy) / det, (sxx * yu - sxy * xu) / det,
                      (xv * syy - yv * sxy) / det, (sxx * yv - sxy * xv) / det)
        }
        return PlaneTransform(a: linear.a, b: linear.b, c: linear.c, d: linear.d,
                              tx: qcx - (linear.a * pcx + linear.b * pcy), ty: qcy - (linear.c * pcx + linear.d * pcy))
    }
}
