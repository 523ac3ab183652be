using System.Text;
using LoraPS.Checkpoints;
using Xunit;

namespace LoraPS.Tests.Checkpoints;

/// <summary>Every malformed file must fail at Open with a CheckpointFormatException that names the file and the problem.</summary>
public class SafetensorsHostileInputTests
{
    private static CheckpointFormatException AssertRejected(byte[] bytes, string problem)
    {
        using var folder = new ScratchFolder();
        string path = folder.WriteBytes("bad.safetensors", bytes);
        var error = Assert.Throws<CheckpointFormatException>(() => SafetensorsFile.Open(path));
        Assert.Equal(path, error.FilePath);
        Assert.Contains(path, error.Message);
        Assert.Contains(problem, error.Problem);
        Assert.Contains(problem, error.Message);
        Assert.Contains("re-download", error.Message); // says what to do
        return error;
    }

    private static CheckpointFormatException AssertRejected(string header, int dataBytes, string problem) =>
        AssertRejected(CheckpointTestFiles.Build(header, dataBytes), problem);

    private static string F32(string name, string shape, long begin, long end) =>
        $"\"{name}\":{{\"dtype\":\"F32\",\"shape\":{shape},\"data_offsets\":[{begin},{end}]}}";

    [Theory]
    [InlineData(0)]
    [InlineData(5)]
    [InlineData(7)]
    public void FileShorterThanTheLengthPrefix(int length) =>
        AssertRejected(new byte[length], $"the file is {length} bytes long, shorter than the 8-byte header length prefix");

    [Fact]
    public void HeaderLongerThanTheFormatLimit() =>
        AssertRejected(CheckpointTestFiles.Build("{}"u8.ToArray(), [], declaredLength: 100_000_001), "more than the format's limit of 100000000 bytes");

    [Fact]
    public void HeaderLengthNearULongMaxDoesNotOverflow() =>
        AssertRejected(CheckpointTestFiles.Build("{}"u8.ToArray(), [], declaredLength: ulong.MaxValue), "more than the format's limit");

    [Fact]
    public void HeaderLongerThanTheFile() =>
        AssertRejected(CheckpointTestFiles.Build("{}"u8.ToArray(), [], declaredLength: 50), "says 50 bytes, but the file has only 2 bytes after the 8-byte prefix");

    [Fact]
    public void EmptyHeader() => AssertRejected(CheckpointTestFiles.Build([], []), "the header is 0 bytes long");

    [Fact]
    public void HeaderThatIsNotUtf8() => AssertRejected(CheckpointTestFiles.Build([(byte)'{', 0xFF, 0xFE, (byte)'}'], []), "not valid UTF-8");

    [Theory]
    [InlineData("{\"a\":")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",}}")]
    [InlineData("{'a':1}")]
    [InlineData("{} // comment")]
    public void HeaderThatIsNotJson(string header) => AssertRejected(header, 0, "the header is not valid JSON");

    [Fact]
    public void TrailingGarbageAfterTheJsonObject() => AssertRejected("{}  x", 0, "the header is not valid JSON");

    [Theory]
    [InlineData("[1,2]")]
    [InlineData("\"text\"")]
    [InlineData("42")]
    public void HeaderThatIsNotAnObject(string header) => AssertRejected(header, 0, "the header is not a JSON object");

    [Fact]
    public void EntryThatIsNotAnObject() => AssertRejected("{\"w\":[1,2]}", 0, "tensor 'w' is described by a StartArray");

    [Theory]
    [InlineData("{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", "dtype")]
    [InlineData("{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", "shape")]
    [InlineData("{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", "data_offsets")]
    public void EntryMissingAField(string header, string field) => AssertRejected(header, 4, $"tensor 'w' has no \"{field}\" field");

    [Theory]
    [InlineData("F4")]
    [InlineData("f32")]
    [InlineData("float32")]
    [InlineData("")]
    public void UnknownDType(string dtype) =>
        AssertRejected($"{{\"w\":{{\"dtype\":\"{dtype}\",\"shape\":[1],\"data_offsets\":[0,4]}}}}", 4, $"tensor 'w' has the unknown dtype '{dtype}' (known: F64, F32");

    [Fact]
    public void DTypeThatIsNotAString() => AssertRejected("{\"w\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "tensor 'w' has a dtype that is a Number");

    [Fact]
    public void NegativeDimension() => AssertRejected("{" + F32("w", "[-1,4]", 0, 16) + "}", 16, "tensor 'w' has a negative shape element -1");

    [Fact]
    public void DimensionTooLargeForAnInteger() => AssertRejected("{" + F32("w", "[99999999999999999999999]", 0, 4) + "}", 4, "shape element 99999999999999999999999 that is too large");

    [Theory]
    [InlineData("[2.5]", "2.5")]
    [InlineData("[1e3]", "1e3")]
    public void DimensionThatIsNotAnInteger(string shape, string element) => AssertRejected("{" + F32("w", shape, 0, 4) + "}", 4, $"shape element {element} that is not an integer");

    [Fact]
    public void DimensionThatIsNotANumber() => AssertRejected("{" + F32("w", "[\"4\"]", 0, 16) + "}", 16, "tensor 'w' has a shape element that is a String");

    [Theory]
    [InlineData("[4611686018427387904,4]")] // 2^62 · 4 elements overflows
    [InlineData("[3074457345618258603]")] // fits as elements, overflows as bytes (·4)
    [InlineData("[4294967296,4294967296,0]")] // 2^64 overflows before the 0, as in the Rust reader's checked fold
    public void ShapeWhoseSizeOverflows(string shape) => AssertRejected("{" + F32("w", shape, 0, 4) + "}", 4, "whose byte size overflows a 64-bit integer");

    [Fact]
    public void NegativeOffset() => AssertRejected("{" + F32("w", "[1]", -4, 0) + "}", 4, "tensor 'w' has a negative data_offsets element -4");

    [Theory]
    [InlineData("[0]")]
    [InlineData("[0,4,8]")]
    public void WrongNumberOfOffsets(string offsets) =>
        AssertRejected($"{{\"w\":{{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":{offsets}}}}}", 4, "it needs exactly two, [begin, end]");

    [Fact]
    public void OffsetsOutsideTheFile() => AssertRejected("{" + F32("w", "[256]", 0, 1024) + "}", 16, "tensor 'w' has data_offsets [0, 1024] outside the data buffer, which has 16 bytes");

    [Fact]
    public void OffsetsPastTheEndOfATruncatedFile() =>
        AssertRejected("{" + F32("a", "[2]", 0, 8) + "," + F32("b", "[2]", 8, 16) + "}", 12, "tensor 'b' has data_offsets [8, 16] outside the data buffer, which has 12 bytes");

    [Fact]
    public void OffsetsThatEndBeforeTheyBegin() => AssertRejected("{" + F32("w", "[0]", 8, 4) + "}", 8, "tensor 'w' has data_offsets [8, 4] that end before they begin");

    [Fact]
    public void OverlappingOffsets() =>
        AssertRejected("{" + F32("a", "[2]", 0, 8) + "," + F32("b", "[2]", 4, 12) + "}", 12, "tensor 'b' at [4, 12) overlaps tensor 'a', which ends at 8");

    [Fact]
    public void GapBetweenTensors() =>
        AssertRejected("{" + F32("a", "[1]", 0, 4) + "," + F32("b", "[1]", 8, 12) + "}", 12, "bytes [4, 8) of the data buffer belong to no tensor (a gap before tensor 'b')");

    [Fact]
    public void DataThatDoesNotStartAtZero() =>
        AssertRejected("{" + F32("a", "[1]", 4, 8) + "}", 8, "bytes [0, 4) of the data buffer belong to no tensor");

    [Fact]
    public void ByteLengthThatDoesNotMatchTheShape() =>
        AssertRejected("{" + F32("w", "[2,3]", 0, 20) + "}", 20, "tensor 'w' has data_offsets [0, 20] spanning 20 bytes, but dtype F32 with shape [2, 3] needs 24 bytes");

    [Fact]
    public void DataThatDoesNotEndAtTheEndOfTheFile() =>
        AssertRejected("{" + F32("w", "[1]", 0, 4) + "}", 12, "the tensors cover 4 bytes of the data buffer but the file has 12 data bytes");

    [Fact]
    public void BytesAfterAnEmptyHeader() => AssertRejected("{}", 3, "the tensors cover 0 bytes of the data buffer but the file has 3 data bytes");

    [Fact]
    public void DuplicateTensorName() =>
        AssertRejected("{" + F32("w", "[1]", 0, 4) + "," + F32("w", "[1]", 4, 8) + "}", 8, "the header has the key 'w' twice");

    [Fact]
    public void DuplicateMetadataKey() =>
        AssertRejected("{\"__metadata__\":{\"format\":\"pt\"},\"__metadata__\":{}}", 0, "the header has the key '__metadata__' twice");

    [Fact]
    public void DuplicateKeyInsideMetadata() =>
        AssertRejected("{\"__metadata__\":{\"format\":\"pt\",\"format\":\"tf\"}}", 0, "'__metadata__' has the key 'format' twice");

    [Fact]
    public void DuplicateFieldInsideAnEntry() =>
        AssertRejected("{\"w\":{\"dtype\":\"F32\",\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "tensor 'w' has the field 'dtype' twice");

    [Fact]
    public void MetadataValueThatIsNotAString() =>
        AssertRejected("{\"__metadata__\":{\"step\":3}}", 0, "'__metadata__' entry 'step' is a Number; metadata values must be strings");

    [Fact]
    public void MetadataThatIsNotAnObject() => AssertRejected("{\"__metadata__\":[]}", 0, "'__metadata__' is a StartArray, not an object of strings");

    [Fact]
    public void DeeplyNestedJsonIsRejectedWithoutRecursingFar() =>
        AssertRejected(string.Concat(Enumerable.Repeat("{\"a\":", 10_000)) + "1" + new string('}', 10_000), 0, "the header is not valid JSON");

    [Fact]
    public void BooleanBytesOtherThanZeroOrOneAreRejectedOnRead()
    {
        using var folder = new ScratchFolder();
        var bytes = CheckpointTestFiles.Build(Encoding.UTF8.GetBytes("{\"m\":{\"dtype\":\"BOOL\",\"shape\":[3],\"data_offsets\":[0,3]}}"), [1, 0, 2]);
        string path = folder.WriteBytes("bool.safetensors", bytes);
        using var file = SafetensorsFile.Open(path);
        var error = Assert.Throws<CheckpointFormatException>(() => file.ReadTensor("m"));
        Assert.Contains("BOOL tensor 'm' holds the byte 2 at element 2", error.Message);
        Assert.Contains(path, error.Message);
    }

    [Fact]
    public void AcceptedQuirksOfValidFiles()
    {
        // Valid per the Rust reader: header keys in any order (it sorts by offset), unknown fields ignored, null metadata,
        // any header length (not only multiples of 8), whitespace padding.
        using var folder = new ScratchFolder();
        string header = "{\"__metadata__\":null,\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8],\"extra\":{\"x\":[1]}}," + F32("a", "[1]", 0, 4) + "} \t\n";
        var data = new byte[8];
        BitConverter.GetBytes(1f).CopyTo(data, 0);
        BitConverter.GetBytes(2f).CopyTo(data, 4);
        string path = folder.WriteBytes("ok.safetensors", CheckpointTestFiles.Build(Encoding.UTF8.GetBytes(header), data));
        using var file = SafetensorsFile.Open(path);
        Assert.Equal(["a", "b"], file.Entries.Select(e => e.Name));
        Assert.Empty(file.Metadata);
        Assert.Equal(2f, file.ReadTensor("b").item<float>());
    }
}
