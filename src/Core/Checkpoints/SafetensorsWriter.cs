using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.RegularExpressions;
using TorchSharp;

namespace LoraPS.Checkpoints;

/// <summary>
/// Writes .safetensors files byte-identical to the Rust <c>safetensors</c> crate (and so to Python
/// <c>save_file</c>/<c>save_pretrained</c>): 8-byte little-endian header length, compact JSON with <c>__metadata__</c>
/// first, tensors ordered by descending dtype then name, the JSON space-padded to a multiple of 8 so every tensor
/// starts 8-byte aligned, then the raw little-endian data.
/// </summary>
/// <remarks>
/// Every file is written to a temporary file in the same folder and renamed over the target, so a crash or an
/// exception leaves either the old file or the new one, never a torn file. Tensors may live on any device and have any
/// strides: each is detached, copied to CPU and made contiguous one at a time, so peak extra memory is one tensor.
/// Tensors that share storage (tied weights) are written once per name; drop the duplicates first if that matters.
/// </remarks>
public static partial class SafetensorsWriter
{
    /// <summary>The single-file name Hugging Face uses for model weights.</summary>
    public const string SingleFileName = "model.safetensors";

    /// <summary>The shard index name Hugging Face uses for sharded model weights.</summary>
    public const string IndexFileName = "model.safetensors.index.json";

    // transformers rejects a safetensors checkpoint whose "format" is not pt/tf/flax/mlx; torch tensors are "pt".
    private const string FormatKey = "format";
    private const string FormatValue = "pt";

    private sealed record Item(string Name, byte[] NameUtf8, torch.Tensor Tensor, SafetensorsDType DType, long[] Shape, long ByteLength);

    /// <summary>
    /// Writes <paramref name="tensors"/> to <paramref name="path"/> atomically, creating its folder if needed.
    /// <paramref name="metadata"/> adds <c>__metadata__</c> strings; <c>format = pt</c> is always included.
    /// </summary>
    public static void Write(string path, IEnumerable<KeyValuePair<string, torch.Tensor>> tensors, IReadOnlyDictionary<string, string>? metadata = null) =>
        Write(path, tensors, metadata, beforeTensorWrite: null);

    /// <summary>Test seam: <paramref name="beforeTensorWrite"/> runs before each tensor's data is written, so a test can fail a write midway.</summary>
    internal static void Write(string path, IEnumerable<KeyValuePair<string, torch.Tensor>> tensors, IReadOnlyDictionary<string, string>? metadata, Action<string>? beforeTensorWrite)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var items = Plan(tensors);
        WriteFile(Path.GetFullPath(path), items, CompleteMetadata(metadata), beforeTensorWrite);
    }

    /// <summary>
    /// Writes <paramref name="tensors"/> into <paramref name="directory"/> the way <c>save_pretrained</c> does: one
    /// <c>model.safetensors</c> when everything fits in <paramref name="maxShardBytes"/>, otherwise
    /// <c>model-0000i-of-0000K.safetensors</c> shards plus <c>model.safetensors.index.json</c>. Weight files from an
    /// earlier save that are not part of this one are deleted afterwards, because transformers loads
    /// <c>model.safetensors</c> before an index and a stale one would shadow the new shards.
    /// </summary>
    public static void WriteSharded(string directory, IEnumerable<KeyValuePair<string, torch.Tensor>> tensors, long maxShardBytes, IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxShardBytes);
        var items = Plan(tensors);
        var fileMetadata = CompleteMetadata(metadata);
        string folder = Path.GetFullPath(directory);
        Directory.CreateDirectory(folder);

        var shards = SplitIntoShards(items, maxShardBytes);
        if (shards.Count == 1)
        {
            WriteFile(Path.Combine(folder, SingleFileName), shards[0], fileMetadata, null);
            RemoveStaleWeights(folder, [SingleFileName]);
            return;
        }
        var written = new List<string>();
        var weightMap = new SortedDictionary<string, string>(StringComparer.Ordinal);
        for (int i = 0; i < shards.Count; i++)
        {
            string fileName = $"model-{i + 1:D5}-of-{shards.Count:D5}.safetensors";
            WriteFile(Path.Combine(folder, fileName), shards[i], fileMetadata, null);
            written.Add(fileName);
            foreach (var item in shards[i])
            {
                weightMap[item.Name] = fileName;
            }
        }
        long totalSize = items.Sum(i => i.ByteLength);
        WriteAtomically(Path.Combine(folder, IndexFileName), stream => WriteIndex(stream, totalSize, weightMap));
        written.Add(IndexFileName);
        RemoveStaleWeights(folder, written);
    }

    /// <summary>
    /// huggingface_hub's <c>split_torch_state_dict_into_shards</c>: walk the tensors in the caller's order, start a new
    /// shard when the next tensor would push the current one over the limit, and give an oversized tensor a shard of its own.
    /// </summary>
    private static List<List<Item>> SplitIntoShards(List<Item> items, long maxShardBytes)
    {
        var shards = new List<List<Item>>();
        var current = new List<Item>();
        long currentBytes = 0;
        foreach (var item in items)
        {
            if (item.ByteLength > maxShardBytes)
            {
                shards.Add([item]);
                continue;
            }
            if (currentBytes + item.ByteLength > maxShardBytes)
            {
                shards.Add(current);
                current = [];
                currentBytes = 0;
            }
            current.Add(item);
            currentBytes += item.ByteLength;
        }
        if (current.Count > 0 || shards.Count == 0)
        {
            shards.Add(current);
        }
        return shards;
    }

    /// <summary>Collects and checks every tensor before any file is touched, so bad input never leaves a partial write.</summary>
    private static List<Item> Plan(IEnumerable<KeyValuePair<string, torch.Tensor>> tensors)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        var strictUtf8 = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);
        var names = new HashSet<string>(StringComparer.Ordinal);
        var items = new List<Item>();
        foreach (var (name, tensor) in tensors)
        {
            if (name is null)
            {
                throw new ArgumentException("A tensor name is null.", nameof(tensors));
            }
            if (name == SafetensorsHeader.MetadataKey)
            {
                throw new ArgumentException($"'{name}' is reserved by the safetensors format for metadata and cannot name a tensor.", nameof(tensors));
            }
            if (tensor is null)
            {
                throw new ArgumentException($"The tensor '{name}' is null.", nameof(tensors));
            }
            if (!names.Add(name))
            {
                throw new ArgumentException($"The tensor name '{name}' appears twice; safetensors keys must be unique.", nameof(tensors));
            }
            if (!SafetensorsDTypes.TryFromScalarType(tensor.dtype, out var dtype))
            {
                throw new ArgumentException($"The tensor '{name}' has dtype {tensor.dtype}, which safetensors cannot store; convert it to a real floating-point, integer or bool dtype first.", nameof(tensors));
            }
            if (tensor.device_type == DeviceType.META)
            {
                throw new ArgumentException($"The tensor '{name}' is on the meta device and has no data to save; materialize it first.", nameof(tensors));
            }
            byte[] nameUtf8;
            try
            {
                nameUtf8 = strictUtf8.GetBytes(name);
            }
            catch (EncoderFallbackException e)
            {
                throw new ArgumentException($"The tensor name '{name}' is not valid Unicode (it has a lone surrogate).", nameof(tensors), e);
            }
            long[] shape = tensor.shape;
            items.Add(new Item(name, nameUtf8, tensor, dtype, shape, checked(tensor.NumberOfElements * dtype.SizeOf())));
        }
        return items;
    }

    private static SortedDictionary<string, string> CompleteMetadata(IReadOnlyDictionary<string, string>? metadata)
    {
        var complete = new SortedDictionary<string, string>(StringComparer.Ordinal);
        foreach (var (key, value) in metadata ?? new Dictionary<string, string>())
        {
            if (key is null || value is null)
            {
                throw new ArgumentException("Metadata keys and values must not be null.", nameof(metadata));
            }
            complete[key] = value;
        }
        if (complete.TryGetValue(FormatKey, out var format) && format != FormatValue)
        {
            throw new ArgumentException($"Metadata 'format' is '{format}', but these are torch tensors: safetensors files from LoraPS always say format = pt, which transformers requires.", nameof(metadata));
        }
        complete[FormatKey] = FormatValue;
        return complete;
    }

    private static void WriteFile(string path, List<Item> items, SortedDictionary<string, string> metadata, Action<string>? beforeTensorWrite)
    {
        // The Rust writer's order: descending Dtype enum order, then name by bytes (Rust compares UTF-8 strings bytewise).
        var ordered = items
            .OrderByDescending(i => i.DType.RustEnumOrder())
            .ThenBy(i => i.NameUtf8, Utf8Order.Instance)
            .ToList();
        byte[] header = BuildHeader(ordered, metadata);
        WriteAtomically(path, stream =>
        {
            Span<byte> prefix = stackalloc byte[8];
            System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(prefix, (ulong)header.Length);
            stream.Write(prefix);
            stream.Write(header);
            foreach (var item in ordered)
            {
                beforeTensorWrite?.Invoke(item.Name);
                using var scope = torch.NewDisposeScope();
                // detach: no autograd history is needed; cpu + contiguous: the file wants dense row-major bytes.
                var dense = item.Tensor.detach().cpu().contiguous();
                TensorBytes.WriteTo(dense, stream);
            }
        });
    }

    /// <summary>The header JSON exactly as serde_json prints the Rust crate's Metadata, padded with spaces to a multiple of 8.</summary>
    private static byte[] BuildHeader(List<Item> ordered, SortedDictionary<string, string> metadata)
    {
        var json = new StringBuilder("{");
        json.Append('"').Append(SafetensorsHeader.MetadataKey).Append("\":{");
        json.AppendJoin(',', metadata.Select(kv => Quote(kv.Key) + ":" + Quote(kv.Value)));
        json.Append('}');
        long offset = 0;
        foreach (var item in ordered)
        {
            json.Append(',').Append(Quote(item.Name)).Append(":{\"dtype\":\"").Append(item.DType.ToString())
                .Append("\",\"shape\":[").AppendJoin(',', item.Shape.Select(d => d.ToString(CultureInfo.InvariantCulture)))
                .Append("],\"data_offsets\":[").Append(offset.ToString(CultureInfo.InvariantCulture)).Append(',')
                .Append((offset + item.ByteLength).ToString(CultureInfo.InvariantCulture)).Append("]}");
            offset += item.ByteLength;
        }
        json.Append('}');
        int length = Encoding.UTF8.GetByteCount(json.ToString());
        json.Append(' ', (8 - length % 8) % 8);
        return Encoding.UTF8.GetBytes(json.ToString());
    }

    /// <summary>A JSON string the way serde_json writes it: only quote, backslash and control characters are escaped.</summary>
    private static string Quote(string text)
    {
        var quoted = new StringBuilder(text.Length + 2).Append('"');
        foreach (char c in text)
        {
            switch (c)
            {
                case '"': quoted.Append("\\\""); break;
                case '\\': quoted.Append("\\\\"); break;
                case '\b': quoted.Append("\\b"); break;
                case '\f': quoted.Append("\\f"); break;
                case '\n': quoted.Append("\\n"); break;
                case '\r': quoted.Append("\\r"); break;
                case '\t': quoted.Append("\\t"); break;
                case < ' ': quoted.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture)); break;
                default: quoted.Append(c); break;
            }
        }
        return quoted.Append('"').ToString();
    }

    /// <summary>The index as transformers writes it: <c>json.dumps(index, indent=2, sort_keys=True) + "\n"</c>.</summary>
    private static void WriteIndex(Stream stream, long totalSize, SortedDictionary<string, string> weightMap)
    {
        using (var json = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            json.WriteStartObject();
            json.WriteStartObject("metadata");
            json.WriteNumber("total_size", totalSize);
            json.WriteEndObject();
            json.WriteStartObject("weight_map");
            foreach (var (name, file) in weightMap)
            {
                json.WriteString(name, file);
            }
            json.WriteEndObject();
            json.WriteEndObject();
        }
        stream.WriteByte((byte)'\n');
    }

    /// <summary>Writes to a temporary file beside <paramref name="path"/>, flushes it to disk, then renames it over the target.</summary>
    internal static void WriteAtomically(string path, Action<Stream> write)
    {
        string folder = Path.GetDirectoryName(path)!;
        Directory.CreateDirectory(folder);
        string temporary = Path.Combine(folder, $".{Path.GetFileName(path)}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var stream = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write, FileShare.None, bufferSize: 1 << 20))
            {
                write(stream);
                stream.Flush(flushToDisk: true);
            }
            File.Move(temporary, path, overwrite: true);
        }
        catch
        {
            try
            {
                File.Delete(temporary);
            }
            catch (Exception cleanup) when (cleanup is IOException or UnauthorizedAccessException)
            {
                // Best effort: the original error matters more than a leftover temporary file.
            }
            throw;
        }
    }

    [GeneratedRegex(@"^model-\d{5}-of-\d{5}\.safetensors$")]
    private static partial Regex ShardFileName();

    private static void RemoveStaleWeights(string folder, IReadOnlyCollection<string> keep)
    {
        foreach (string file in Directory.EnumerateFiles(folder))
        {
            string name = Path.GetFileName(file);
            bool weights = name == SingleFileName || name == IndexFileName || ShardFileName().IsMatch(name);
            if (weights && !keep.Contains(name))
            {
                File.Delete(file);
            }
        }
    }

    private sealed class Utf8Order : IComparer<byte[]>
    {
        public static readonly Utf8Order Instance = new();

        public int Compare(byte[]? x, byte[]? y) => x.AsSpan().SequenceCompareTo(y);
    }
}
