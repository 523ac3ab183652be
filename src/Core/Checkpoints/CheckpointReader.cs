using System.Text.Json;
using TorchSharp;

namespace LoraPS.Checkpoints;

/// <summary>
/// The weights of a model folder or file, however they are split: <c>model.safetensors</c>, shards listed by
/// <c>model.safetensors.index.json</c>, or any single <c>*.safetensors</c> path. Every file is opened and validated up
/// front, and every tensor the index lists is checked to be in its shard, so a broken download fails at open, not
/// halfway through loading.
/// </summary>
public sealed class CheckpointReader : IDisposable
{
    private const string IncompleteAdvice = "The checkpoint is incomplete or its index is corrupt; download or export the whole folder again.";

    private readonly List<SafetensorsFile> _files;
    private readonly Dictionary<string, SafetensorsFile> _owners;
    private readonly IReadOnlyList<string> _names;

    private CheckpointReader(string path, List<SafetensorsFile> files, Dictionary<string, SafetensorsFile> owners, List<string> names)
    {
        Path = path;
        _files = files;
        _owners = owners;
        _names = names.AsReadOnly();
        Files = files.Select(f => f.Path).ToList();
    }

    /// <summary>The file that was opened: the single .safetensors file or the index.</summary>
    public string Path { get; }

    /// <summary>Full paths of the .safetensors files, in shard order.</summary>
    public IReadOnlyList<string> Files { get; }

    /// <summary>Every tensor name, in file order (index order for shards).</summary>
    public IReadOnlyCollection<string> TensorNames => _names;

    /// <summary>
    /// Opens a checkpoint. For a folder it looks for <c>model.safetensors</c> first and then
    /// <c>model.safetensors.index.json</c>, the order transformers uses, so both tools load the same files.
    /// </summary>
    public static CheckpointReader Open(string directoryOrFile)
    {
        ArgumentException.ThrowIfNullOrEmpty(directoryOrFile);
        string full = System.IO.Path.GetFullPath(directoryOrFile);
        if (File.Exists(full))
        {
            return full.EndsWith(".json", StringComparison.OrdinalIgnoreCase) ? OpenIndex(full) : OpenSingle(full);
        }
        if (!Directory.Exists(full))
        {
            throw new FileNotFoundException($"The checkpoint '{full}' does not exist.", full);
        }
        string single = System.IO.Path.Combine(full, SafetensorsWriter.SingleFileName);
        if (File.Exists(single))
        {
            return OpenSingle(single);
        }
        string index = System.IO.Path.Combine(full, SafetensorsWriter.IndexFileName);
        if (File.Exists(index))
        {
            return OpenIndex(index);
        }
        throw new FileNotFoundException(MissingWeightsMessage(full), single);
    }

    public bool Contains(string name) => _owners.ContainsKey(name);

    /// <summary>Dtype, shape and offsets of <paramref name="name"/> without reading its data.</summary>
    public TensorEntry Describe(string name) => Owner(name).GetEntry(name);

    /// <summary>A new CPU tensor in the stored dtype and shape; see <see cref="SafetensorsFile.ReadTensor"/>.</summary>
    public torch.Tensor ReadTensor(string name) => Owner(name).ReadTensor(name);

    private SafetensorsFile Owner(string name)
    {
        if (_owners.TryGetValue(name, out var file))
        {
            return file;
        }
        throw new KeyNotFoundException($"The tensor '{name}' is not in the checkpoint '{Path}', which has {_names.Count} tensors.");
    }

    private static CheckpointReader OpenSingle(string path)
    {
        var file = SafetensorsFile.Open(path);
        var owners = file.Entries.ToDictionary(e => e.Name, _ => file, StringComparer.Ordinal);
        return new CheckpointReader(path, [file], owners, file.Entries.Select(e => e.Name).ToList());
    }

    private static CheckpointReader OpenIndex(string indexPath)
    {
        var weightMap = ReadWeightMap(indexPath);
        string folder = System.IO.Path.GetDirectoryName(indexPath)!;
        var files = new List<SafetensorsFile>();
        try
        {
            var byShard = new Dictionary<string, SafetensorsFile>(StringComparer.Ordinal);
            var owners = new Dictionary<string, SafetensorsFile>(StringComparer.Ordinal);
            foreach (var (name, shard) in weightMap)
            {
                if (!byShard.TryGetValue(shard, out var file))
                {
                    string shardPath = System.IO.Path.Combine(folder, shard);
                    if (!File.Exists(shardPath))
                    {
                        throw new CheckpointFormatException(indexPath, $"it maps tensor '{name}' to the shard '{shard}', which does not exist in '{folder}'", IncompleteAdvice);
                    }
                    file = SafetensorsFile.Open(shardPath);
                    files.Add(file);
                    byShard.Add(shard, file);
                }
                if (!file.TryGetEntry(name, out _))
                {
                    throw new CheckpointFormatException(indexPath, $"it maps tensor '{name}' to the shard '{shard}', but that shard has no such tensor", IncompleteAdvice);
                }
                owners.Add(name, file);
            }
            // Shards in file-name order (model-00001-of-… first), whatever order the index lists tensors in.
            files.Sort((a, b) => string.CompareOrdinal(a.Path, b.Path));
            return new CheckpointReader(indexPath, files, owners, weightMap.Select(kv => kv.Key).ToList());
        }
        catch
        {
            files.ForEach(f => f.Dispose());
            throw;
        }
    }

    /// <summary>Reads <c>weight_map</c> (tensor → shard file) from an index, strictly: duplicate names and paths that leave the folder are errors.</summary>
    private static List<KeyValuePair<string, string>> ReadWeightMap(string indexPath)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(File.ReadAllBytes(indexPath));
        }
        catch (JsonException e)
        {
            throw new CheckpointFormatException(indexPath, $"the index is not valid JSON ({e.Message})", IncompleteAdvice, e);
        }
        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
            {
                throw new CheckpointFormatException(indexPath, "the index has no \"weight_map\" object mapping tensor names to shard files", IncompleteAdvice);
            }
            var seen = new HashSet<string>(StringComparer.Ordinal);
            var weightMap = new List<KeyValuePair<string, string>>();
            foreach (var property in map.EnumerateObject())
            {
                if (!seen.Add(property.Name))
                {
                    throw new CheckpointFormatException(indexPath, $"the weight_map lists tensor '{property.Name}' twice", IncompleteAdvice);
                }
                if (property.Value.ValueKind != JsonValueKind.String)
                {
                    throw new CheckpointFormatException(indexPath, $"the weight_map entry for tensor '{property.Name}' is a {property.Value.ValueKind}, not a shard file name", IncompleteAdvice);
                }
                string shard = property.Value.GetString()!;
                if (shard.Length == 0 || System.IO.Path.IsPathRooted(shard) || shard.Split('/', '\\').Contains(".."))
                {
                    throw new CheckpointFormatException(indexPath, $"the weight_map entry for tensor '{property.Name}' names the shard '{shard}', which is not a file inside the checkpoint folder", IncompleteAdvice);
                }
                weightMap.Add(new(property.Name, shard));
            }
            return weightMap;
        }
    }

    private static string MissingWeightsMessage(string folder)
    {
        var present = Directory.EnumerateFiles(folder).Select(System.IO.Path.GetFileName).OrderBy(n => n, StringComparer.Ordinal).ToList();
        string hint = present.Any(n => n!.EndsWith(".bin", StringComparison.OrdinalIgnoreCase) || n!.EndsWith(".pt", StringComparison.OrdinalIgnoreCase))
            ? " It has PyTorch pickle weights, which LoraPS does not load (pickles can run code); convert them to safetensors first."
            : present.Any(n => n!.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase))
                ? " Pass the path of the .safetensors file you want instead of the folder."
                : string.Empty;
        return $"The folder '{folder}' has neither {SafetensorsWriter.SingleFileName} nor {SafetensorsWriter.IndexFileName}.{hint}";
    }

    public void Dispose() => _files.ForEach(f => f.Dispose());
}
