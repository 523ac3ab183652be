using System.Buffers.Binary;
using System.Text;
using System.Text.Json;

namespace LoraPS.Tests.Checkpoints;

/// <summary>Paths to the repo's fixtures, scratch folders, and hand-built safetensors bytes for the checkpoint tests.</summary>
internal static class CheckpointTestFiles
{
    public static string RepoRoot { get; } = FindRepoRoot();

    public static string TinyLlama => Path.Combine(RepoRoot, "tests", "fixtures", "models", "tiny-llama", "model.safetensors");

    public static string Stories260K => Path.Combine(RepoRoot, "models", "stories260K", "model.safetensors");

    private static string FindRepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "LoraPS.sln")))
            {
                return dir.FullName;
            }
        }
        throw new InvalidOperationException("LoraPS.sln not found above " + AppContext.BaseDirectory);
    }

    /// <summary>An 8-byte little-endian length, the header bytes as given, then the data.</summary>
    public static byte[] Build(byte[] header, byte[] data, ulong? declaredLength = null)
    {
        var bytes = new byte[8 + header.Length + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, declaredLength ?? (ulong)header.Length);
        header.CopyTo(bytes, 8);
        data.CopyTo(bytes, 8 + header.Length);
        return bytes;
    }

    public static byte[] Build(string headerJson, int dataBytes) => Build(Encoding.UTF8.GetBytes(headerJson), new byte[dataBytes]);
}

/// <summary>A fresh folder under the temp directory, deleted on dispose.</summary>
internal sealed class ScratchFolder : IDisposable
{
    public ScratchFolder()
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "loraps-checkpoints-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }

    public string File(string name) => System.IO.Path.Combine(Path, name);

    public string[] FileNames() => Directory.GetFiles(Path).Select(f => System.IO.Path.GetFileName(f)!).OrderBy(n => n, StringComparer.Ordinal).ToArray();

    public string WriteBytes(string name, byte[] bytes)
    {
        string path = File(name);
        System.IO.File.WriteAllBytes(path, bytes);
        return path;
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

/// <summary>
/// A deliberately separate safetensors parser (BinaryPrimitives + JsonDocument, ~20 lines) so the writer is checked
/// against something that does not share code with <c>SafetensorsFile</c>.
/// </summary>
internal sealed class TinySafetensorsParser
{
    public sealed record Tensor(string Name, string DType, long[] Shape, long Begin, long End);

    public ulong HeaderLength { get; private init; }
    public string HeaderText { get; private init; } = "";
    public List<string> KeyOrder { get; } = [];
    public Dictionary<string, string> Metadata { get; } = [];
    public Dictionary<string, Tensor> Tensors { get; } = [];
    public byte[] Bytes { get; private init; } = [];

    public static TinySafetensorsParser Parse(byte[] bytes)
    {
        ulong n = BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        var parser = new TinySafetensorsParser { HeaderLength = n, HeaderText = Encoding.UTF8.GetString(bytes, 8, (int)n), Bytes = bytes };
        using var doc = JsonDocument.Parse(bytes.AsMemory(8, (int)n));
        foreach (var p in doc.RootElement.EnumerateObject())
        {
            parser.KeyOrder.Add(p.Name);
            if (p.Name == "__metadata__")
            {
                foreach (var m in p.Value.EnumerateObject())
                {
                    parser.Metadata[m.Name] = m.Value.GetString()!;
                }
                continue;
            }
            var offsets = p.Value.GetProperty("data_offsets").EnumerateArray().Select(e => e.GetInt64()).ToArray();
            parser.Tensors[p.Name] = new Tensor(p.Name, p.Value.GetProperty("dtype").GetString()!,
                p.Value.GetProperty("shape").EnumerateArray().Select(e => e.GetInt64()).ToArray(), offsets[0], offsets[1]);
        }
        return parser;
    }

    public byte[] DataOf(string name)
    {
        var t = Tensors[name];
        long start = 8 + (long)HeaderLength + t.Begin;
        return Bytes.AsSpan((int)start, (int)(t.End - t.Begin)).ToArray();
    }
}
