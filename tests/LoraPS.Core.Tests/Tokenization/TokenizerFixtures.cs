namespace LoraPS.Tests.Tokenization;

/// <summary>Paths of the tokenizer fixtures, found from the test binaries by walking up to LoraPS.sln.</summary>
internal static class TokenizerFixtures
{
    public static string RepoRoot { get; } = FindRepoRoot();

    public static string Stories260K => Path.Combine(RepoRoot, "models", "stories260K");

    public static string Llama2 => Path.Combine(RepoRoot, "tests", "fixtures", "tokenizers", "llama2-tokenizer");

    public static string MiniLm => Path.Combine(RepoRoot, "tests", "fixtures", "tokenizers", "minilm-tokenizer");

    private static string FindRepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "LoraPS.sln")))
            {
                return dir.FullName;
            }
        }
        throw new DirectoryNotFoundException($"LoraPS.sln not found above {AppContext.BaseDirectory}.");
    }
}

/// <summary>A temporary folder holding chosen files, deleted on dispose.</summary>
internal sealed class TempModelFolder : IDisposable
{
    public TempModelFolder()
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "loraps-tok-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }

    /// <summary>A folder with copies of the named files of <paramref name="source"/> (those that exist).</summary>
    public static TempModelFolder CopyOf(string source, params string[] fileNames)
    {
        var folder = new TempModelFolder();
        foreach (string name in fileNames)
        {
            string from = System.IO.Path.Combine(source, name);
            if (File.Exists(from))
            {
                File.Copy(from, System.IO.Path.Combine(folder.Path, name));
            }
        }
        return folder;
    }

    public void Write(string fileName, string content) => File.WriteAllText(System.IO.Path.Combine(Path, fileName), content);

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
