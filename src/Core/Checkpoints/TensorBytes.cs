using TorchSharp;

namespace LoraPS.Checkpoints;

/// <summary>
/// Moves raw bytes between native memory / streams and a CPU tensor's storage without a managed copy.
/// <see cref="torch.Tensor.bytes"/> is a live <see cref="Span{T}"/> over the tensor's storage (offset included), but a
/// span's length is an int, so tensors over 2 GiB are handled as 1-D views narrowed to chunks.
/// </summary>
internal static unsafe class TensorBytes
{
    /// <summary>1 GiB: well inside int range and big enough that the per-chunk view costs nothing.</summary>
    public const int DefaultChunkBytes = 1 << 30;

    /// <summary>Copies <paramref name="length"/> bytes from <paramref name="source"/> into a contiguous CPU tensor of exactly that many bytes.</summary>
    public static void CopyIn(byte* source, long length, torch.Tensor destination, int chunkBytes = DefaultChunkBytes)
    {
        ForEachChunk(destination, length, chunkBytes, (span, offset) => new ReadOnlySpan<byte>(source + offset, span.Length).CopyTo(span));
    }

    /// <summary>Test seam for the chunked path: copies a managed buffer in.</summary>
    public static void CopyIn(byte[] source, torch.Tensor destination, int chunkBytes)
    {
        fixed (byte* p = source)
        {
            CopyIn(p, source.LongLength, destination, chunkBytes);
        }
    }

    /// <summary>Writes the bytes of a contiguous CPU tensor to <paramref name="stream"/>.</summary>
    public static void WriteTo(torch.Tensor source, Stream stream, int chunkBytes = DefaultChunkBytes)
    {
        long length = source.NumberOfElements * source.ElementSize;
        ForEachChunk(source, length, chunkBytes, (span, _) => stream.Write(span));
    }

    private delegate void ChunkAction(Span<byte> chunk, long offset);

    private static void ForEachChunk(torch.Tensor tensor, long length, int chunkBytes, ChunkAction action)
    {
        long tensorBytes = tensor.NumberOfElements * tensor.ElementSize;
        if (tensorBytes != length)
        {
            throw new ArgumentException($"The tensor holds {tensorBytes} bytes, not {length}.", nameof(tensor));
        }
        if (tensor.device_type != DeviceType.CPU || !tensor.is_contiguous())
        {
            throw new ArgumentException("Raw byte access needs a contiguous CPU tensor.", nameof(tensor));
        }
        if (length == 0)
        {
            return;
        }
        if (length <= chunkBytes)
        {
            action(tensor.bytes, 0);
            return;
        }
        long elementSize = tensor.ElementSize;
        long elementsPerChunk = Math.Max(1, chunkBytes / elementSize);
        long elements = tensor.NumberOfElements;
        using var flat = tensor.view(-1);
        for (long start = 0; start < elements; start += elementsPerChunk)
        {
            using var part = flat.narrow(0, start, Math.Min(elementsPerChunk, elements - start));
            action(part.bytes, start * elementSize);
        }
    }
}
