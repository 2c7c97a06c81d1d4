import Foundation
import PackagePlugin

/// Writes `BuildCommit.swift` (the commit being built, `-dirty` when tracked files differ from
/// it) before every build, so `--version` names what is running. The file is rewritten only
/// when its text changes, so an unchanged commit recompiles nothing. Outside a git checkout
/// (a source archive) the commit is `unknown`.
@main
struct BuildCommitPlugin: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        let output = context.pluginWorkDirectoryURL.appending(path: "generated")
        let script = #"""
        set -u
        out="$1"; repo="$2"
        mkdir -p "$out"
        commit=$(git -C "$repo" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
        if [ "$commit" != unknown ] && [ -n "$(git -C "$repo" status --porcelain --untracked-files=no 2>/dev/null | head -c 1)" ]; then
          commit="$commit-dirty"
        fi
        text="/// The git commit this binary was built from (written by BuildCommitPlugin).
        let buildCommit = \"$commit\""
        if [ ! -f "$out/BuildCommit.swift" ] || [ "$(cat "$out/BuildCommit.swift")" != "$text" ]; then
          printf '%s\n' "$text" > "$out/BuildCommit.swift.tmp" && mv "$out/BuildCommit.swift.tmp" "$out/BuildCommit.swift"
        fi
        """#
        return [.prebuildCommand(
            displayName: "Recording the git commit of \(target.name)",
            executable: URL(fileURLWithPath: "/bin/sh"),
            arguments: ["-c", script, "sh", output.path, context.package.directoryURL.path],
            outputFilesDirectory: output)]
    }
}
