namespace LoraPS.Adapters;

/// <summary>
/// Writes a folder so that readers see the old content or the complete new content, never a half-written one:
/// everything is written into a hidden temporary folder beside (or inside) the target and then renamed into place.
/// On any failure the temporary folder is deleted and the target is left as it was.
/// </summary>
internal static class AtomicFolder
{
    const string TempMarker = ".lorapstmp-";

    /// <summary>
    /// Creates or replaces the folder <paramref name="target"/> with what <paramref name="write"/> puts into the
    /// temporary folder it is given. An existing non-empty target is replaced only with <paramref name="replace"/>.
    /// </summary>
    /// <param name="target">The folder to create or replace.</param>
    /// <param name="replace">Replace a non-empty folder (Force).</param>
    /// <param name="write">Writes the content into the temporary folder it is given.</param>
    /// <param name="beforeCommit">Runs on the finished temporary folder just before it is moved into place (a test seam).</param>
    public static void Replace(string target, bool replace, Action<string> write, Action<string>? beforeCommit = null)
    {
        var full = Normalize(target);
        var parent = Path.GetDirectoryName(full) ?? throw new ArgumentException($"'{full}' has no parent folder to write beside.", nameof(target));
        var name = Path.GetFileName(full);
        if (!replace && IsNonEmptyFolder(full)) throw NotEmpty(full);
        Directory.CreateDirectory(parent);
        var temp = Path.Combine(parent, $".{name}{TempMarker}{Guid.NewGuid():N}");
        Directory.CreateDirectory(temp);
        try
        {
            write(temp);
            beforeCommit?.Invoke(temp);
            if (Directory.Exists(full))
            {
                if (!replace && IsNonEmptyFolder(full)) throw NotEmpty(full);
                // Rename the old folder aside first: Directory.Move cannot overwrite, and a rename keeps the swap short.
                var old = Path.Combine(parent, $".{name}.lorapsold-{Guid.NewGuid():N}");
                Directory.Move(full, old);
                try
                {
                    Directory.Move(temp, full);
                }
                catch
                {
                    Directory.Move(old, full);
                    throw;
                }
                TryDelete(old);
            }
            else
            {
                Directory.Move(temp, full);
            }
        }
        finally
        {
            TryDelete(temp);
        }
    }

    /// <summary>
    /// Writes files into the existing or new folder <paramref name="directory"/> without touching its other entries:
    /// the files are written into a temporary subfolder and each is then renamed over its target, in the order
    /// <paramref name="write"/> returns their names (put the file that marks the folder as complete last). Each file
    /// is replaced atomically; a new folder appears atomically as a whole.
    /// </summary>
    public static void WriteFiles(string directory, Func<string, IReadOnlyList<string>> write, Action<string>? beforeCommit = null)
    {
        var full = Normalize(directory);
        if (!Directory.Exists(full))
        {
            Replace(full, replace: false, temp => write(temp), beforeCommit);
            return;
        }
        var temp = Path.Combine(full, $"{TempMarker}{Guid.NewGuid():N}");
        Directory.CreateDirectory(temp);
        try
        {
            var names = write(temp);
            beforeCommit?.Invoke(temp);
            foreach (var name in names) File.Move(Path.Combine(temp, name), Path.Combine(full, name), overwrite: true);
        }
        finally
        {
            TryDelete(temp);
        }
    }

    public static bool IsNonEmptyFolder(string path) => Directory.Exists(path) && Directory.EnumerateFileSystemEntries(path).Any();

    static IOException NotEmpty(string folder) => new($"The folder '{folder}' is not empty; pass Force to replace its content.");

    static string Normalize(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var full = Path.TrimEndingDirectorySeparator(Path.GetFullPath(path));
        if (File.Exists(full)) throw new IOException($"'{full}' is a file; give a folder path.");
        return full;
    }

    static void TryDelete(string folder)
    {
        try
        {
            if (Directory.Exists(folder)) Directory.Delete(folder, recursive: true);
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }
}
