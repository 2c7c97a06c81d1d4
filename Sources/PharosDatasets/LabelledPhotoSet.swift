import Foundation
import PharosDescriptors
import PharosEvaluation
import PharosRouting
import PharosVectors

/// The offline labelled photo set (`pharos data photos`), from photos that Debian and pip
/// packages ship: every KDE Plasma wallpaper photo (`plasma-workspace-wallpapers`) in several
/// random crops and resolutions (one instance each), plus the example photos of `opencv-doc`
/// and scikit-image's data folder as distractors (the few that show the same scene twice,
/// such as graf1/graf3 or box/box_in_scene, labelled together).
public struct LabelledPhotoSet: Sendable {
    /// Output folder (images/ and labels.json).
    public var out: String
    /// Crops per wallpaper photo, besides the whole photo.
    public var views: Int
    /// Longer side of the largest view, in pixels.
    public var side: Int
    /// Use at most this many wallpapers (sorted by name); 0 for all.
    public var wallpaperLimit: Int
    /// Folder of the wallpapers.
    public var wallpapers: String
    /// Folder of opencv-doc's example photos.
    public var opencv: String
    /// Folder of scikit-image's data photos.
    public var skimage: String

    /// A set description.
    public init(out: String, views: Int, side: Int, wallpaperLimit: Int, wallpapers: String, opencv: String, skimage: String) {
        self.out = out
        self.views = views
        self.side = side
        self.wallpaperLimit = wallpaperLimit
        self.wallpapers = wallpapers
        self.opencv = opencv
        self.skimage = skimage
    }

    /// What was written.
    public struct Summary: Sendable, Equatable {
        /// Photos written.
        public var photos: Int
        /// Instances with several views.
        public var instancesWithViews: Int
        /// Query photos (those with another view of their instance).
        public var queries: Int
        /// Seconds taken.
        public var seconds: Double
    }

    /// Distractor files that show the same object or scene: labelled together.
    public static let groups: [String: String] = [
        "graf1.png": "graf", "graf3.png": "graf", "box.png": "box", "box_in_scene.png": "box",
        "aloeL.jpg": "aloe", "aloeR.jpg": "aloe", "basketball1.png": "basketball", "basketball2.png": "basketball",
        "Blender_Suzanne1.jpg": "suzanne", "Blender_Suzanne2.jpg": "suzanne", "ela_original.jpg": "ela", "ela_modified.jpg": "ela",
        "leuvenA.jpg": "leuven", "leuvenB.jpg": "leuven", "rubberwhale1.png": "rubberwhale", "rubberwhale2.png": "rubberwhale",
        "aero1.jpg": "aero", "aero3.jpg": "aero", "left.jpg": "stereo", "right.jpg": "stereo",
        "motorcycle_left.png": "motorcycle", "motorcycle_right.png": "motorcycle",
        "chessboard_GRAY.png": "skimage-chessboard", "chessboard_RGB.png": "skimage-chessboard",
    ]
    /// Near-duplicate calibration shots: many views of one board would swamp the queries.
    public static func skipped(_ name: String) -> Bool {
        (name.hasPrefix("left") || name.hasPrefix("right")) && name.count == 10 && name.hasSuffix(".jpg")   // left01.jpg ... right14.jpg
    }

    /// Builds the set; `progress(done, total)` over the wallpapers, `report` for skipped files.
    public func build(progress: (Int, Int) -> Void = { _, _ in }, report: (String) -> Void = { _ in }) throws -> Summary {
        let fm = FileManager.default
        guard fm.fileExists(atPath: wallpapers) else {
            throw DescriptorError.badInput("\(wallpapers) is missing: apt-get install plasma-workspace-wallpapers (Scripts/install-deps.sh does)")
        }
        try? fm.removeItem(atPath: out + "/images")
        var labels: [String: String] = [:]
        var written = 0
        let clock = Date()

        // Wallpapers: the distinct photo files of each (many sizes are symlinks to one file).
        var instances = try fm.contentsOfDirectory(atPath: wallpapers).sorted()
        if wallpaperLimit > 0 { instances = Array(instances.prefix(wallpaperLimit)) }
        for (n, instance) in instances.enumerated() {
            let folder = "\(wallpapers)/\(instance)/contents/images"
            guard let names = try? fm.contentsOfDirectory(atPath: folder) else { continue }
            let sources = Set(names.map { URL(fileURLWithPath: "\(folder)/\($0)").resolvingSymlinksInPath().path }).sorted()
            var rng = SplitMix64(seed: KeyHash.of(instance))
            var view = 0
            for source in sources {
                guard let photo = try? ImageLoader.load(path: source, maximumSide: side * 2) else {
                    report("skipped \(source): not readable"); continue
                }
                var crops = [ImageResampler.resize(photo, longerSide: min(side, max(photo.height, photo.width)))]
                for _ in 0..<views {
                    // A crop of 12-45% of the area at a random place, shown at 50-100% of `side`,
                    // with its brightness and contrast changed: views a matcher has to work for.
                    let area = 0.12 + 0.33 * Double(rng.nextUnitFloat()), aspect = 0.75 + 0.6 * Double(rng.nextUnitFloat())
                    let h = min(photo.height, max(32, Int((Double(photo.height * photo.width) * area / aspect).squareRoot())))
                    let w = min(photo.width, max(32, Int(Double(h) * aspect)))
                    let top = Int(Double(rng.nextUnitFloat()) * Double(photo.height - h)), left = Int(Double(rng.nextUnitFloat()) * Double(photo.width - w))
                    let brightness = Float(0.7 + 0.6 * Double(rng.nextUnitFloat())), contrast = Float(0.7 + 0.6 * Double(rng.nextUnitFloat()))
                    let crop = photo.cropped(top: top, left: left, height: h, width: w).adjusted(brightness: brightness, contrast: contrast)
                    let longer = Int(Double(side) * (0.5 + 0.5 * Double(rng.nextUnitFloat())))
                    crops.append(ImageResampler.resize(crop, longerSide: min(longer, max(h, w))))
                }
                for crop in crops {
                    let key = String(format: "wallpapers/%@/v%02d.jpg", instance, view)
                    try write(crop, key: key, quality: 60 + Int(Double(rng.nextUnitFloat()) * 35))
                    labels[key] = "wallpaper-" + instance
                    view += 1
                    written += 1
                }
            }
            progress(n + 1, instances.count)
        }

        // Distractors, copied as they are.
        for (folder, prefix) in [(opencv, "opencv"), (skimage, "skimage")] {
            guard let names = try? fm.contentsOfDirectory(atPath: folder) else {
                report("no distractors from \(folder) (missing)"); continue
            }
            for name in names.sorted() where ImageLoader.isPhoto(fileName: name) && !Self.skipped(name) {
                let key = "\(prefix)/\(name)"
                guard (try? ImageLoader.load(path: "\(folder)/\(name)", maximumSide: 64)) != nil else {
                    report("skipped \(folder)/\(name): not readable"); continue
                }
                try fm.createDirectory(atPath: "\(out)/images/\(prefix)", withIntermediateDirectories: true)
                try fm.copyItem(atPath: "\(folder)/\(name)", toPath: "\(out)/images/\(key)")
                labels[key] = Self.groups[name].map { "\(prefix)-\($0)" } ?? key
                written += 1
            }
        }
        var counts: [String: Int] = [:]
        for label in labels.values { counts[label, default: 0] += 1 }
        let queries = labels.keys.filter { counts[labels[$0]!]! > 1 }.sorted()
        try RetrievalGroundTruth.saveLabelled(labels, queries: queries, to: out + "/labels.json")
        return Summary(photos: written, instancesWithViews: counts.values.count { $0 > 1 }, queries: queries.count,
                       seconds: Date().timeIntervalSince(clock))
    }

    private func write(_ image: FeatureMap, key: String, quality: Int) throws {
        let path = "\(out)/images/\(key)"
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try Data(ImageLoader.encodeJPEG(image, quality: quality)).write(to: URL(fileURLWithPath: path))
    }
}
