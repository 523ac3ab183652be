using System.Buffers.Binary;
using LoraPS.Checkpoints;
using TorchSharp;
using Xunit;

namespace LoraPS.Tests.Checkpoints;

public class SafetensorsRoundTripTests
{
    private static byte[] BytesOf(torch.Tensor t) => t.contiguous().bytes.ToArray();

    private static torch.Tensor FromBits(ushort[] bits, torch.ScalarType type)
    {
        var t = torch.empty(bits.Length, type);
        var raw = new byte[bits.Length * 2];
        for (int i = 0; i < bits.Length; i++)
        {
            BinaryPrimitives.WriteUInt16LittleEndian(raw.AsSpan(2 * i), bits[i]);
        }
        t.bytes = raw;
        return t;
    }

    public static TheoryData<string> DTypeCases => new() { "F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "BOOL" };

    private static torch.Tensor Sample(string dtype) => dtype switch
    {
        "F64" => torch.tensor(new[] { 1.5, -0.0, double.NaN, double.PositiveInfinity, double.Epsilon, -1e300 }),
        "F32" => torch.tensor(new[] { 1.5f, -0.0f, float.NaN, float.NegativeInfinity, float.Epsilon, 3.4e38f }),
        // 1.0, -0, smallest subnormal, -inf, a NaN with a payload, 65504 (max)
        "F16" => FromBits([0x3C00, 0x8000, 0x0001, 0xFC00, 0x7E01, 0x7BFF], torch.ScalarType.Float16),
        // 1.0, -0, smallest subnormal, +inf, a NaN with a payload, -2.0
        "BF16" => FromBits([0x3F80, 0x8000, 0x0001, 0x7F80, 0x7FC1, 0xC000], torch.ScalarType.BFloat16),
        "I64" => torch.tensor(new[] { long.MinValue, -1L, 0L, long.MaxValue }),
        "I32" => torch.tensor(new[] { int.MinValue, -1, 0, int.MaxValue }),
        "I16" => torch.tensor(new short[] { short.MinValue, -1, 0, short.MaxValue }),
        "I8" => torch.tensor(new sbyte[] { sbyte.MinValue, -1, 0, sbyte.MaxValue }),
        "U8" => torch.tensor(new byte[] { 0, 1, 128, 255 }),
        "BOOL" => torch.tensor(new[] { true, false, false, true, true }),
        _ => throw new ArgumentException(dtype),
    };

    [Fact]
    public void ReadsAfterTheMappedPagesWereReleasedGiveTheSameBytes()
    {
        // Each read drops the pages it copied from (MappedPages.Release); tensors sharing a page, and reading the same
        // tensor again, must fault the file's bytes back in unchanged.
        using var scope = torch.NewDisposeScope();
        using var folder = new ScratchFolder();
        var tensors = new Dictionary<string, torch.Tensor>
        {
            ["a"] = torch.arange(0, 3001, dtype: torch.ScalarType.Float32),                  // ends mid-page
            ["b"] = torch.arange(0, 5000, dtype: torch.ScalarType.Int64).mul(-7),           // shares a's last page
            ["c"] = torch.ones(3, torch.ScalarType.BFloat16),
        };
        string path = folder.File("t.safetensors");
        SafetensorsWriter.Write(path, tensors);
        using var file = SafetensorsFile.Open(path);
        foreach (var round in new[] { 1, 2 })
        {
            foreach (var name in new[] { "b", "a", "c", "a" })
            {
                Assert.Equal(BytesOf(tensors[name]), BytesOf(file.ReadTensor(name)));
            }
        }
    }

    [Theory]
    [MemberData(nameof(DTypeCases))]
    public void EveryTorchDTypeRoundTripsBitForBit(string dtypeName)
    {
        using var scope = torch.NewDisposeScope();
        using var folder = new ScratchFolder();
        var original = Sample(dtypeName).reshape(1, -1);
        string path = folder.File("t.safetensors");
        SafetensorsWriter.Write(path, new Dictionary<string, torch.Tensor> { ["x"] = original });

        using var file = SafetensorsFile.Open(path);
        var entry = Assert.Single(file.Entries);
        Assert.Equal(Enum.Parse<SafetensorsDType>(dtypeName), entry.DType);
        Assert.Equal(original.shape, entry.Shape);
        var read = file.ReadTensor("x");
        Assert.Equal(original.dtype, read.dtype);
        Assert.Equal(original.shape, read.shape);
        Assert.Equal(BytesOf(original), BytesOf(read));
    }

    [Fact]
    public void HalfPrecisionBitPatternsDecodeToTheirValues()
    {
        using var scope = torch.NewDisposeScope();
        using var folder = new ScratchFolder();
        string path = folder.File("half.safetensors");
        SafetensorsWriter.Write(path, new Dictionary<string, torch.Tensor>
        {
            ["bf16"] = Sample("BF16"),
            ["f16"] = Sample("F16"),
        });
        using var file = SafetensorsFile.Open(path);
        var bf16 = file.ReadTensor("bf16").to(torch.float32).data<float>().ToArray();
        var f16 = file.ReadTensor("f16").to(torch.float32).data<float>().ToArray();
        Assert.Equal(1.0f, bf16[0]);
        Assert.True(float.IsNegative(bf16[1]) && bf16[1] == 0);
        Assert.Equal(float.PositiveInfinity, bf16[3]);
        Assert.True(float.IsNaN(bf16[4]));
        Assert.Equal(-2.0f, bf16[5]);
        Assert.Equal(1.0f, f16[0]);
        Assert.Equal(MathF.Pow(2, -24), f16[2]);
        Assert.Equal(float.NegativeInfinity, f16[3]);
        Assert.Equal(65504f, f16[5]);
    }

    [Fact]
    public void ScalarsAndZeroSizeTensorsRoundTrip()
    {
        using var scope = torch.NewDisposeScope();
        using var folder = new ScratchFolder();
        string path = folder.File("shapes.safetensors");
        SafetensorsWriter.Write(path, new Dictionary<string, torch.Tensor>
        {
            ["scalar"] = torch.tensor(3.25f),
            ["scalar_long"] = torch.tensor(7L),
            ["empty"] = torch.empty(0, 3),
            ["empty_middle"] = torch.zeros(new long[] { 2, 0, 4 }, torch.int64),
            ["after"] = torch.arange(4, dtype: torch.float32),
        });
        using var file = SafetensorsFile.Open(path);
        file.TryGetEntry("scalar", out var scalarEntry);
        Assert.Empty(scalarEntry.Shape);
        Assert.Equal(4, scalarEntry.ByteLength);
        Assert.Equal(1, scalarEntry.ElementCount);

        var scalar = file.ReadTensor("scalar");
        Assert.Equal(0, scalar.Dimensions);
        Assert.Equal(3.25f, scalar.item<float>());
        Assert.Equal(7L, file.ReadTensor("scalar_long").item<long>());
        Assert.Equal(new long[] { 0, 3 }, file.ReadTensor("empty").shape);
        var middle = file.ReadTensor("empty_middle");
        Assert.Equal(new long[] { 2, 0, 4 }, middle.shape);
        Assert.Equal(torch.int64, middle.dtype);
        file.TryGetEntry("empty_middle", out var emptyEntry);
        Assert.Equal(emptyEntry.Begin, emptyEntry.End);
        Assert.Equal(new[] { 0f, 1, 2, 3 }, file.ReadTensor("after").data<float>().ToArray());
    }

    [Fact]
    public void NonContiguousTensorsAreStoredRowMajor()
    {
        using var scope = torch.NewDisposeScope();
        using var folder = new ScratchFolder();
        var source = torch.arange(6, dtype: torch.float32).reshape(2, 3);
        var transposed = source.t(); // [[0,3],[1,4],[2,5]], not contiguous
        string path = folder.File("t.safetensors");
        SafetensorsWriter.Write(path, [new("t", transposed)]);
        using var file = SafetensorsFile.Open(path);
        var read = file.ReadTensor("t");
        Assert.Equal(new long[] { 3, 2 }, read.shape);
        Assert.Equal(new[] { 0f, 3, 1, 4, 2, 5 }, read.data<float>().ToArray());
    }

    [Fact]
    public void MetadataRoundTripsAndAlwaysSaysFormatPt()
    {
        using var scope = torch.NewDisposeScope();
        using var folder = new ScratchFolder();
        string path = folder.File("m.safetensors");
        SafetensorsWriter.Write(path, [new("w", torch.ones(2))], new Dictionary<string, string>
        {
            ["base_model"] = "models/tiny-llama",
            ["note"] = "quote \" backslash \\ newline \n tab \t unicode é 😀",
        });
        using var file = SafetensorsFile.Open(path);
        Assert.Equal("pt", file.Metadata["format"]);
        Assert.Equal("models/tiny-llama", file.Metadata["base_model"]);
        Assert.Equal("quote \" backslash \\ newline \n tab \t unicode é 😀", file.Metadata["note"]);
        Assert.Equal(3, file.Metadata.Count);

        string plain = folder.File("plain.safetensors");
        SafetensorsWriter.Write(plain, [new("w", torch.ones(2))]);
        using var plainFile = SafetensorsFile.Open(plain);
        Assert.Equal(new Dictionary<string, string> { ["format"] = "pt" }, plainFile.Metadata);
    }

    [Fact]
    public void TensorNamesWithEscapesAndUnicodeRoundTrip()
    {
        using var scope = torch.NewDisposeScope();
        using var folder = new ScratchFolder();
        string path = folder.File("names.safetensors");
        string[] names = ["a\"b", "back\\slash", "ctrl\u0001", "ünïcödé", "emoji😀"];
        SafetensorsWriter.Write(path, names.Select((n, i) => new KeyValuePair<string, torch.Tensor>(n, torch.full(1, (float)i))));
        using var file = SafetensorsFile.Open(path);
        foreach (var (name, i) in names.Select((n, i) => (n, i)))
        {
            Assert.Equal(i, file.ReadTensor(name).item<float>());
        }
    }

    [Fact]
    public void UnsupportedDTypesAreListedAndReadableAsRawBytes()
    {
        using var scope = torch.NewDisposeScope();
        using var folder = new ScratchFolder();
        string header = """{"f8":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]},"u16":{"dtype":"U16","shape":[2],"data_offsets":[2,6]}}""";
        var bytes = CheckpointTestFiles.Build(System.Text.Encoding.UTF8.GetBytes(header), [0x38, 0xB8, 0x01, 0x00, 0xFF, 0xFF]);
        string path = folder.WriteBytes("u.safetensors", bytes);
        using var file = SafetensorsFile.Open(path);
        Assert.Equal([SafetensorsDType.F8_E4M3, SafetensorsDType.U16], file.Entries.Select(e => e.DType));
        var error = Assert.Throws<NotSupportedException>(() => file.ReadTensor("u16"));
        Assert.Contains("Unsupported dtype", error.Message);
        Assert.Contains("U16", error.Message);
        Assert.Contains(path, error.Message);
        var raw = file.ReadRawTensor("u16");
        Assert.Equal(torch.uint8, raw.dtype);
        Assert.Equal(new byte[] { 0x01, 0x00, 0xFF, 0xFF }, raw.data<byte>().ToArray());
        Assert.Equal(new byte[] { 0x38, 0xB8 }, file.ReadRawTensor("f8").data<byte>().ToArray());
    }

    [Fact]
    public void ReadTensorOwnsItsMemoryAfterTheFileIsDisposed()
    {
        using var scope = torch.NewDisposeScope();
        using var folder = new ScratchFolder();
        string path = folder.File("o.safetensors");
        SafetensorsWriter.Write(path, [new("w", torch.arange(5, dtype: torch.float64))]);
        torch.Tensor read;
        using (var file = SafetensorsFile.Open(path))
        {
            read = file.ReadTensor("w");
            Assert.Throws<KeyNotFoundException>(() => file.ReadTensor("missing"));
        }
        File.Delete(path);
        Assert.Equal(new[] { 0.0, 1, 2, 3, 4 }, read.data<double>().ToArray());
    }

    [Fact]
    public void DisposedFileRefusesReads()
    {
        using var folder = new ScratchFolder();
        string path = folder.File("d.safetensors");
        SafetensorsWriter.Write(path, [new("w", torch.ones(1))]);
        var file = SafetensorsFile.Open(path);
        file.Dispose();
        Assert.Throws<ObjectDisposedException>(() => file.ReadTensor("w"));
    }

    [Fact]
    public void ReadingDoesNotCopyThroughManagedMemory()
    {
        using var scope = torch.NewDisposeScope();
        using var folder = new ScratchFolder();
        string path = folder.File("big.safetensors");
        SafetensorsWriter.Write(path, [new("w", torch.ones(1024, 1024))]); // 4 MiB
        using var file = SafetensorsFile.Open(path);
        using (file.ReadTensor("w")) { } // warm up JIT and native libraries
        long before = GC.GetAllocatedBytesForCurrentThread();
        using var read = file.ReadTensor("w");
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.True(allocated < 64 * 1024, $"ReadTensor allocated {allocated} managed bytes for a 4 MiB tensor");
        Assert.Equal(1024 * 1024f, read.sum().item<float>());
    }

    [Fact]
    public void ChunkedCopiesHandleTensorsBiggerThanOneChunk()
    {
        using var scope = torch.NewDisposeScope();
        // The 1 GiB chunking for >2 GiB tensors, exercised with 12-byte chunks on a 10-element float tensor.
        var source = torch.arange(10, dtype: torch.float32);
        var stream = new MemoryStream();
        LoraPS.Checkpoints.TensorBytes.WriteTo(source, stream, chunkBytes: 12);
        Assert.Equal(source.bytes.ToArray(), stream.ToArray());

        var destination = torch.empty(10, torch.float32);
        LoraPS.Checkpoints.TensorBytes.CopyIn(stream.ToArray(), destination, chunkBytes: 12);
        Assert.Equal(source.data<float>().ToArray(), destination.data<float>().ToArray());

        var scalar = torch.empty(Array.Empty<long>(), torch.float64);
        LoraPS.Checkpoints.TensorBytes.CopyIn(BitConverter.GetBytes(2.5), scalar, chunkBytes: 4);
        Assert.Equal(2.5, scalar.item<double>());
    }
}
