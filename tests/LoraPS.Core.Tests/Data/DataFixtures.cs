using System.Text;
using LoraPS.Tests.Tokenization;

namespace LoraPS.Tests.Data;

/// <summary>Paths of the bundled datasets, and temporary dataset files for reader tests.</summary>
internal static class DataFixtures
{
    public static string DataRoot => Path.Combine(TokenizerFixtures.RepoRoot, "data");

    public static string AlpacaSubset => Path.Combine(DataRoot, "alpaca", "alpaca_5000_subset.json");

    public static string Sst2(string split) => Path.Combine(DataRoot, "glue", "sst2", split + ".tsv");

    public static string Arithmetic(string name) => Path.Combine(DataRoot, "arithmetic", name + ".jsonl");
}

/// <summary>A temporary folder for dataset files, deleted on dispose.</summary>
internal sealed class TempDataFolder : IDisposable
{
    public TempDataFolder()
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "loraps-data-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }

    /// <summary>Writes <paramref name="content"/> as UTF-8 without a BOM (exactly these characters, newlines included).</summary>
    public string Write(string fileName, string content) => WriteBytes(fileName, new UTF8Encoding(false).GetBytes(content));

    public string WriteBytes(string fileName, byte[] content)
    {
        string file = System.IO.Path.Combine(Path, fileName);
        File.WriteAllBytes(file, content);
        return file;
    }

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
