import ArgumentParser
import Foundation
import PharosCommandLine
import PharosDatasets
import PharosDescriptors

/// `pharos data photos`: builds the offline labelled photo set (`LabelledPhotoSet`).
struct PhotoSetCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "photos", abstract: "Build the labelled photo set (wallpapers in many crops + distractors) with its labels.json.")

    @Option(help: "Output folder (images/ and labels.json).") var out: String = "data/photos"
    @Option(help: "Crops per wallpaper photo, besides the whole photo.") var views: Int = 6
    @Option(help: "Longer side of the largest view, in pixels.") var side: Int = 768
    @Option(help: "Use at most this many wallpapers (sorted by name); 0 for all.") var wallpaperLimit: Int = 0
    @Option(help: "Folder of the wallpapers.") var wallpapers: String = "/usr/share/wallpapers"
    @Option(help: "Folder of opencv-doc's example photos.") var opencv: String = "/usr/share/doc/opencv-doc/examples/data"
    @Option(help: "Folder of scikit-image's data photos (Scripts/install-deps.sh unpacks it).") var skimage: String = ".deps/skimage-data"

    func run() throws {
        let set = LabelledPhotoSet(out: out, views: views, side: side, wallpaperLimit: wallpaperLimit, wallpapers: wallpapers,
                                   opencv: opencv, skimage: skimage)
        let bar = ProgressBar("photos", total: 0)
        let summary: LabelledPhotoSet.Summary
        do { summary = try set.build(progress: { bar.update($0, of: $1) }, report: printError) } catch let error as DescriptorError {
            throw ValidationError(error.description)
        }
        bar.finish()
        print(String(format: "wrote %d photos (%d instances with several views, %d queries) to %@/images and %@/labels.json in %.1f s",
                     summary.photos, summary.instancesWithViews, summary.queries, out, out, summary.seconds))
    }
}
