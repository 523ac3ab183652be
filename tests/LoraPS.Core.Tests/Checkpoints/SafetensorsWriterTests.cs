using System.Text;
using System.Text.Json;
using LoraPS.Checkpoints;
using TorchSharp;
using Xunit;

namespace LoraPS.Tests.Checkpoints;

public class SafetensorsWriterTests
{
    [Fact]
    public void LayoutMatchesTheRustCrateByteForByte()
    {
        // The Rust crate's test_serialization tensor ("attn.0", F32 [1,2,3] = 0..5) with the metadata we always add.
        using var scope = torch.NewDisposeScope();
        using var folder = new ScratchFolder();
        string path = folder.File("attn.safetensors");
        SafetensorsWriter.Write(path, [new("attn.0", torch.arange(6, dtype: torch.float32).reshape(1, 2, 3))]);

        string json = """{"__metadata__":{"format":"pt"},"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}""" + " ";
        var expected = new List<byte> { 96, 0, 0, 0, 0, 0, 0, 0 };
        expected.AddRange(Encoding.UTF8.GetBytes(json));
        foreach (float f in new[] { 0f, 1, 2, 3, 4, 5 })
        {
            expected.AddRange(BitConverter.GetBytes(f));
        }
        Assert.Equal(expected.ToArray(), File.ReadAllBytes(path));
    }

    [Fact]
    public void HeaderIsPaddedWithSpacesAndOrderedLikeTheRustWriter()
    {
        using var scope = torch.NewDisposeScope();
        using var folder = new ScratchFolder();
        string path = folder.File("order.safetensors");
        SafetensorsWriter.Write(path, new Dictionary<string, torch.Tensor>
        {
            ["b"] = torch.ones(3),
            ["flag"] = torch.tensor(new[] { true }),
            ["a"] = torch.ones(1),
            ["half"] = torch.ones(1, torch.float16),
            ["long"] = torch.ones(1, torch.int64),
            ["brain"] = torch.ones(1, torch.bfloat16),
            ["double"] = torch.ones(1, torch.float64),
            ["bytes"] = torch.ones(2, torch.uint8),
            ["int"] = torch.ones(1, torch.int32),
        });
        var parsed = TinySafetensorsParser.Parse(File.ReadAllBytes(path));

        Assert.Equal(0UL, parsed.HeaderLength % 8);
        Assert.StartsWith("""{"__metadata__":{"format":"pt"},""", parsed.HeaderText);
        string trimmed = parsed.HeaderText.TrimEnd(' ');
        Assert.EndsWith("}", trimmed);
        Assert.True(parsed.HeaderText.Length - trimmed.Length < 8);
        // Rust Dtype enum order, descending: I64 > F64 > F32 > I32 > BF16 > F16 > U8 > BOOL; names ascending within a dtype.
        Assert.Equal(["__metadata__", "long", "double", "a", "b", "int", "brain", "half", "bytes", "flag"], parsed.KeyOrder);
        long expectedBegin = 0;
        foreach (string name in parsed.KeyOrder.Skip(1))
        {
            Assert.Equal(expectedBegin, parsed.Tensors[name].Begin);
            expectedBegin = parsed.Tensors[name].End;
        }
        Assert.Equal(new FileInfo(path).Length, 8 + (long)parsed.HeaderLength + expectedBegin);
    }

    [Fact]
    public void OurReaderAndAnIndependentParserAgree()
    {
        using var scope = torch.NewDisposeScope();
        using var folder = new ScratchFolder();
        string path = folder.File("agree.safetensors");
        torch.manual_seed(7);
        var tensors = new Dictionary<string, torch.Tensor>
        {
            ["model.layers.0.weight"] = torch.randn(5, 7),
            ["model.layers.0.bias"] = torch.randn(7, dtype: torch.float64),
            ["ids"] = torch.randint(0, 1000, new long[] { 3, 4 }, dtype: torch.int64),
            ["mask"] = torch.tensor(new[] { true, false, true }),
            ["scale"] = torch.randn(2, 2).to(torch.bfloat16),
            ["step"] = torch.tensor(3L),
        };
        SafetensorsWriter.Write(path, tensors, new Dictionary<string, string> { ["k"] = "v" });

        var independent = TinySafetensorsParser.Parse(File.ReadAllBytes(path));
        using var file = SafetensorsFile.Open(path);
        Assert.Equal(independent.Metadata, file.Metadata);
        Assert.Equal(tensors.Count, file.Entries.Count);
        foreach (var entry in file.Entries)
        {
            var other = independent.Tensors[entry.Name];
            Assert.Equal(other.DType, entry.DType.ToString());
            Assert.Equal(other.Shape, entry.Shape);
            Assert.Equal((other.Begin, other.End), (entry.Begin, entry.End));
            Assert.Equal(independent.DataOf(entry.Name), file.ReadTensor(entry.Name).bytes.ToArray());
            Assert.Equal(tensors[entry.Name].contiguous().bytes.ToArray(), independent.DataOf(entry.Name));
        }
    }

    public static TheoryData<string> FixtureFiles()
    {
        var data = new TheoryData<string>();
        string root = Path.Combine(CheckpointTestFiles.RepoRoot, "tests", "fixtures");
        foreach (string file in Directory.EnumerateFiles(root, "*.safetensors", SearchOption.AllDirectories).OrderBy(f => f, StringComparer.Ordinal))
        {
            data.Add(Path.GetRelativePath(CheckpointTestFiles.RepoRoot, file));
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(FixtureFiles))]
    public void RewritingAFixtureReproducesItByteForByte(string relativePath)
    {
        // The fixtures were written with the Rust crate's layout; reading every tensor and writing it back must give the same bytes.
        using var scope = torch.NewDisposeScope();
        using var folder = new ScratchFolder();
        string source = Path.Combine(CheckpointTestFiles.RepoRoot, relativePath);
        string copy = folder.File("copy.safetensors");
        using (var file = SafetensorsFile.Open(source))
        {
            var tensors = file.Entries.Select(e => new KeyValuePair<string, torch.Tensor>(e.Name, file.ReadTensor(e.Name))).ToList();
            SafetensorsWriter.Write(copy, tensors, file.Metadata);
        }
        Assert.Equal(File.ReadAllBytes(source), File.ReadAllBytes(copy));
    }

    [Fact]
    public void SuccessfulWriteLeavesOnlyTheTarget()
    {
        using var scope = torch.NewDisposeScope();
        using var folder = new ScratchFolder();
        SafetensorsWriter.Write(folder.File("w.safetensors"), [new("w", torch.ones(4))]);
        SafetensorsWriter.Write(folder.File("w.safetensors"), [new("w", torch.zeros(4))]); // overwrite
        Assert.Equal(["w.safetensors"], folder.FileNames());
        using var file = SafetensorsFile.Open(folder.File("w.safetensors"));
        Assert.Equal(0f, file.ReadTensor("w").sum().item<float>());
    }

    [Fact]
    public void WriteCreatesMissingFolders()
    {
        using var scope = torch.NewDisposeScope();
        using var folder = new ScratchFolder();
        string path = Path.Combine(folder.Path, "a", "b", "w.safetensors");
        SafetensorsWriter.Write(path, [new("w", torch.ones(1))]);
        Assert.True(File.Exists(path));
    }

    private static IEnumerable<KeyValuePair<string, torch.Tensor>> ThrowingAfterTwo()
    {
        yield return new("a", torch.ones(2));
        yield return new("b", torch.ones(2));
        throw new InvalidOperationException("state dict enumeration failed");
    }

    [Fact]
    public void EnumerationFailingMidwayLeavesTheExistingFileUntouched()
    {
        using var scope = torch.NewDisposeScope();
        using var folder = new ScratchFolder();
        string path = folder.File("model.safetensors");
        SafetensorsWriter.Write(path, [new("old", torch.arange(3, dtype: torch.float32))]);
        byte[] before = File.ReadAllBytes(path);

        var error = Assert.Throws<InvalidOperationException>(() => SafetensorsWriter.Write(path, ThrowingAfterTwo()));
        Assert.Equal("state dict enumeration failed", error.Message);
        Assert.Equal(before, File.ReadAllBytes(path));
        Assert.Equal(["model.safetensors"], folder.FileNames());
    }

    [Fact]
    public void FailureWhileWritingDataDeletesTheTemporaryFileAndKeepsTheTarget()
    {
        using var scope = torch.NewDisposeScope();
        using var folder = new ScratchFolder();
        string path = folder.File("model.safetensors");
        SafetensorsWriter.Write(path, [new("old", torch.ones(3))]);
        byte[] before = File.ReadAllBytes(path);
        var tensors = new Dictionary<string, torch.Tensor> { ["a"] = torch.ones(1000), ["b"] = torch.ones(1000), ["c"] = torch.ones(1000) };
        bool sawPartialTemp = false;

        Assert.Throws<IOException>(() => SafetensorsWriter.Write(path, tensors, null, beforeTensorWrite: name =>
        {
            if (name == "b")
            {
                sawPartialTemp = folder.FileNames().Any(n => n.EndsWith(".tmp", StringComparison.Ordinal));
                throw new IOException("disk full");
            }
        }));
        Assert.True(sawPartialTemp, "the data should go to a temporary file first");
        Assert.Equal(before, File.ReadAllBytes(path));
        Assert.Equal(["model.safetensors"], folder.FileNames());
    }

    [Fact]
    public void InvalidInputIsRejectedBeforeAnythingIsWritten()
    {
        using var scope = torch.NewDisposeScope();
        using var folder = new ScratchFolder();
        string path = folder.File("x.safetensors");
        var duplicate = new List<KeyValuePair<string, torch.Tensor>> { new("w", torch.ones(1)), new("w", torch.ones(1)) };
        Assert.Contains("appears twice", Assert.Throws<ArgumentException>(() => SafetensorsWriter.Write(path, duplicate)).Message);
        Assert.Contains("reserved", Assert.Throws<ArgumentException>(() => SafetensorsWriter.Write(path, [new("__metadata__", torch.ones(1))])).Message);
        Assert.Contains("ComplexFloat32", Assert.Throws<ArgumentException>(() => SafetensorsWriter.Write(path, [new("c", torch.ones(2, torch.complex64))])).Message);
        Assert.Contains("meta device", Assert.Throws<ArgumentException>(() => SafetensorsWriter.Write(path, [new("m", torch.empty(2, device: torch.META))])).Message);
        var tf = new Dictionary<string, string> { ["format"] = "tf" };
        Assert.Contains("format = pt", Assert.Throws<ArgumentException>(() => SafetensorsWriter.Write(path, [new("w", torch.ones(1))], tf)).Message);
        Assert.Empty(folder.FileNames());
    }

    [Fact]
    public void ShardedWriteSplitsLikeHuggingFaceAndReadsBack()
    {
        using var scope = torch.NewDisposeScope();
        using var folder = new ScratchFolder();
        // Five 400-byte tensors and a 1000-byte limit: [t0 t1] [t2 t3] [t4]. The 1200-byte tensor after t2 gets a shard
        // of its own at once, while t2's shard stays open (huggingface_hub's split_state_dict_into_shards does the same).
        var tensors = new List<KeyValuePair<string, torch.Tensor>>();
        for (int i = 0; i < 5; i++)
        {
            tensors.Add(new($"layers.{i}.weight", torch.full(100, (float)i)));
            if (i == 2)
            {
                tensors.Add(new("big", torch.full(300, 9f)));
            }
        }
        SafetensorsWriter.WriteSharded(folder.Path, tensors, maxShardBytes: 1000);

        Assert.Equal(
            ["model-00001-of-00004.safetensors", "model-00002-of-00004.safetensors", "model-00003-of-00004.safetensors",
             "model-00004-of-00004.safetensors", "model.safetensors.index.json"],
            folder.FileNames());
        using var index = JsonDocument.Parse(File.ReadAllText(folder.File("model.safetensors.index.json")));
        Assert.Equal(400 * 5 + 1200, index.RootElement.GetProperty("metadata").GetProperty("total_size").GetInt64());
        var weightMap = index.RootElement.GetProperty("weight_map").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString());
        Assert.Equal(["big", "layers.0.weight", "layers.1.weight", "layers.2.weight", "layers.3.weight", "layers.4.weight"], weightMap.Keys);
        Assert.Equal("model-00001-of-00004.safetensors", weightMap["layers.1.weight"]);
        Assert.Equal("model-00002-of-00004.safetensors", weightMap["big"]);
        Assert.Equal("model-00003-of-00004.safetensors", weightMap["layers.2.weight"]);
        Assert.Equal("model-00003-of-00004.safetensors", weightMap["layers.3.weight"]);
        Assert.Equal("model-00004-of-00004.safetensors", weightMap["layers.4.weight"]);
        Assert.EndsWith("}\n", File.ReadAllText(folder.File("model.safetensors.index.json")));

        using var reader = CheckpointReader.Open(folder.Path);
        Assert.Equal(4, reader.Files.Count);
        Assert.Equal(6, reader.TensorNames.Count);
        Assert.Equal(3f, reader.ReadTensor("layers.3.weight")[0].item<float>());
        Assert.Equal(new long[] { 300 }, reader.Describe("big").Shape);
        using var shard = SafetensorsFile.Open(folder.File("model-00002-of-00004.safetensors"));
        Assert.Equal("pt", shard.Metadata["format"]);
    }

    [Fact]
    public void ShardedWriteThatFitsIsOneFileAndStaleWeightsAreRemoved()
    {
        using var scope = torch.NewDisposeScope();
        using var folder = new ScratchFolder();
        File.WriteAllText(folder.File("config.json"), "{}");
        var tensors = new Dictionary<string, torch.Tensor> { ["a"] = torch.ones(100), ["b"] = torch.zeros(100) };

        SafetensorsWriter.WriteSharded(folder.Path, tensors, maxShardBytes: 500);
        Assert.Equal(["config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "model.safetensors.index.json"], folder.FileNames());

        SafetensorsWriter.WriteSharded(folder.Path, tensors, maxShardBytes: 10_000);
        Assert.Equal(["config.json", "model.safetensors"], folder.FileNames());
        using (var reader = CheckpointReader.Open(folder.Path))
        {
            Assert.Equal([folder.File("model.safetensors")], reader.Files);
            Assert.Equal(100f, reader.ReadTensor("a").sum().item<float>());
        }

        SafetensorsWriter.WriteSharded(folder.Path, tensors, maxShardBytes: 500);
        Assert.Equal(["config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "model.safetensors.index.json"], folder.FileNames());
    }
}
