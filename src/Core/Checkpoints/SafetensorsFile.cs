using System.Buffers.Binary;
using System.IO.MemoryMappedFiles;
using TorchSharp;

namespace LoraPS.Checkpoints;

/// <summary>
/// One .safetensors file, memory-mapped. <see cref="Open"/> validates the whole header up front (see
/// <see cref="SafetensorsHeader"/>), so a file that opens has only well-formed entries; tensors are then copied
/// straight from the mapped pages into new torch storage, never through a managed array.
/// </summary>
/// <remarks>
/// The format is little-endian and so is every platform .NET and libtorch run on here; tensor bytes are copied as-is.
/// If another process truncates the file while it is mapped, reads fault: do not rewrite a checkpoint in place while it
/// is open (<see cref="SafetensorsWriter"/> replaces files by rename, which leaves the mapped old file intact on Unix).
/// Reads may run on several threads; <see cref="Dispose"/> must not race them.
/// </remarks>
public sealed unsafe class SafetensorsFile : IDisposable
{
    private readonly MemoryMappedFile _map;
    private readonly MemoryMappedViewAccessor _view;
    private readonly long _dataStart;
    private readonly Dictionary<string, TensorEntry> _byName;
    private bool _disposed;

    private SafetensorsFile(string path, MemoryMappedFile map, MemoryMappedViewAccessor view, long dataStart, SafetensorsHeader.Parsed header)
    {
        Path = path;
        _map = map;
        _view = view;
        _dataStart = dataStart;
        Metadata = header.Metadata;
        Entries = header.Entries;
        _byName = header.Entries.ToDictionary(e => e.Name, StringComparer.Ordinal);
    }

    /// <summary>Full path of the file.</summary>
    public string Path { get; }

    /// <summary>The header's <c>__metadata__</c> map (empty when absent). Hugging Face files carry <c>format = pt</c>.</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>Every tensor, in the order of its data in the file.</summary>
    public IReadOnlyList<TensorEntry> Entries { get; }

    /// <summary>Opens and validates <paramref name="path"/>; throws <see cref="CheckpointFormatException"/> for any malformed header.</summary>
    public static SafetensorsFile Open(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!BitConverter.IsLittleEndian)
        {
            throw new PlatformNotSupportedException("safetensors data is little-endian and LoraPS copies it without byte swapping; big-endian machines are not supported.");
        }
        string fullPath = System.IO.Path.GetFullPath(path);
        if (!File.Exists(fullPath))
        {
            throw new FileNotFoundException($"The safetensors file '{fullPath}' does not exist.", fullPath);
        }
        // FileShare.Delete lets a writer atomically replace the file by rename while it is open here.
        var stream = new FileStream(fullPath, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete);
        long fileLength = stream.Length;
        if (fileLength < 8)
        {
            stream.Dispose();
            throw SafetensorsHeader.Error(fullPath, $"the file is {fileLength} bytes long, shorter than the 8-byte header length prefix");
        }
        MemoryMappedFile? map = null;
        MemoryMappedViewAccessor? view = null;
        try
        {
            map = MemoryMappedFile.CreateFromFile(stream, null, 0, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: false);
            view = map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
            SafetensorsHeader.Parsed header;
            int headerLength;
            byte* basePointer = Acquire(view);
            try
            {
                ulong declared = BinaryPrimitives.ReadUInt64LittleEndian(new ReadOnlySpan<byte>(basePointer, 8));
                headerLength = SafetensorsHeader.CheckHeaderLength(fullPath, declared, fileLength);
                header = SafetensorsHeader.Parse(fullPath, new ReadOnlySpan<byte>(basePointer + 8, headerLength), fileLength - 8 - headerLength);
            }
            finally
            {
                view.SafeMemoryMappedViewHandle.ReleasePointer();
            }
            return new SafetensorsFile(fullPath, map, view, 8 + headerLength, header);
        }
        catch
        {
            view?.Dispose();
            if (map is null)
            {
                stream.Dispose();
            }
            map?.Dispose();
            throw;
        }
    }

    public bool TryGetEntry(string name, out TensorEntry entry) => _byName.TryGetValue(name, out entry!);

    /// <summary>The entry for <paramref name="name"/>; <see cref="KeyNotFoundException"/> naming the file when absent.</summary>
    public TensorEntry GetEntry(string name)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_byName.TryGetValue(name, out var entry))
        {
            return entry;
        }
        throw new KeyNotFoundException($"The tensor '{name}' is not in '{Path}', which has {Entries.Count} tensors.");
    }

    /// <summary>
    /// A new CPU tensor in the stored dtype and shape that owns its memory. U16/U32/U64 and FP8 have no TorchSharp type:
    /// for those this throws <see cref="NotSupportedException"/>; use <see cref="ReadRawTensor"/>.
    /// </summary>
    public torch.Tensor ReadTensor(string name)
    {
        var entry = GetEntry(name);
        if (!entry.DType.TryGetScalarType(out var scalarType))
        {
            throw new NotSupportedException(
                $"Unsupported dtype: tensor '{name}' in '{Path}' is {entry.DType}, which TorchSharp has no tensor type for. " +
                "Read its bytes with ReadRawTensor and convert them, or convert the checkpoint to a supported dtype.");
        }
        return Read(entry, torch.empty(entry.Shape, scalarType));
    }

    /// <summary>The stored bytes of <paramref name="name"/> as a new 1-D uint8 CPU tensor; works for every dtype.</summary>
    public torch.Tensor ReadRawTensor(string name)
    {
        var entry = GetEntry(name);
        return Read(entry, torch.empty(entry.ByteLength, torch.ScalarType.Byte));
    }

    private torch.Tensor Read(TensorEntry entry, torch.Tensor destination)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        try
        {
            byte* basePointer = Acquire(_view);
            try
            {
                byte* source = basePointer + _dataStart + entry.Begin;
                if (entry.DType == SafetensorsDType.BOOL)
                {
                    CheckBooleans(entry, source);
                }
                TensorBytes.CopyIn(source, entry.ByteLength, destination);
                MappedPages.Release(source, entry.ByteLength);
            }
            finally
            {
                _view.SafeMemoryMappedViewHandle.ReleasePointer();
            }
            return destination;
        }
        catch
        {
            destination.Dispose();
            throw;
        }
    }

    /// <summary>torch's bool is a byte that must be 0 or 1; any other value would make comparisons behave oddly.</summary>
    private void CheckBooleans(TensorEntry entry, byte* source)
    {
        for (long offset = 0; offset < entry.ByteLength; offset += TensorBytes.DefaultChunkBytes)
        {
            var chunk = new ReadOnlySpan<byte>(source + offset, (int)Math.Min(TensorBytes.DefaultChunkBytes, entry.ByteLength - offset));
            int bad = chunk.IndexOfAnyExcept((byte)0, (byte)1);
            if (bad >= 0)
            {
                throw SafetensorsHeader.Error(Path, $"BOOL tensor '{entry.Name}' holds the byte {chunk[bad]} at element {offset + bad}; booleans must be 0 or 1");
            }
        }
    }

    /// <summary>Pins the mapping for the duration of one read; the SafeHandle's count keeps it mapped even if the GC runs.</summary>
    private static byte* Acquire(MemoryMappedViewAccessor view)
    {
        byte* pointer = null;
        view.SafeMemoryMappedViewHandle.AcquirePointer(ref pointer);
        return pointer + view.PointerOffset;
    }

    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }
        _disposed = true;
        _view.Dispose();
        _map.Dispose();
    }
}
