using System.Text.Json;
using LoraPS.Checkpoints;
using TorchSharp;
using Xunit;

namespace LoraPS.Tests.Checkpoints;

public class CheckpointReaderTests
{
    private static readonly string[] LlamaLayerKeys =
    [
        "input_layernorm.weight", "mlp.down_proj.weight", "mlp.gate_proj.weight", "mlp.up_proj.weight",
        "post_attention_layernorm.weight", "self_attn.k_proj.weight", "self_attn.o_proj.weight",
        "self_attn.q_proj.weight", "self_attn.v_proj.weight",
    ];

    [Fact]
    public void TinyLlamaFixtureHasTheDocumentedKeysAndShapes()
    {
        using var scope = torch.NewDisposeScope();
        using var reader = CheckpointReader.Open(Path.GetDirectoryName(CheckpointTestFiles.TinyLlama)!);
        Assert.Equal([CheckpointTestFiles.TinyLlama], reader.Files);
        var expected = new List<string> { "lm_head.weight", "model.embed_tokens.weight", "model.norm.weight" };
        expected.AddRange(from layer in new[] { 0, 1 } from key in LlamaLayerKeys select $"model.layers.{layer}.{key}");
        Assert.Equal(21, reader.TensorNames.Count);
        Assert.Equal(expected.Order(StringComparer.Ordinal), reader.TensorNames.Order(StringComparer.Ordinal));

        var shapes = new Dictionary<string, long[]>
        {
            ["model.embed_tokens.weight"] = [512, 64],
            ["lm_head.weight"] = [512, 64],
            ["model.norm.weight"] = [64],
            ["model.layers.1.input_layernorm.weight"] = [64],
            ["model.layers.0.self_attn.q_proj.weight"] = [64, 64],
            ["model.layers.0.self_attn.k_proj.weight"] = [32, 64],
            ["model.layers.0.self_attn.v_proj.weight"] = [32, 64],
            ["model.layers.1.self_attn.o_proj.weight"] = [64, 64],
            ["model.layers.0.mlp.gate_proj.weight"] = [128, 64],
            ["model.layers.1.mlp.up_proj.weight"] = [128, 64],
            ["model.layers.0.mlp.down_proj.weight"] = [64, 128],
        };
        foreach (var (name, shape) in shapes)
        {
            var entry = reader.Describe(name);
            Assert.Equal(SafetensorsDType.F32, entry.DType);
            Assert.Equal(shape, entry.Shape);
            var tensor = reader.ReadTensor(name);
            Assert.Equal(shape, tensor.shape);
            Assert.Equal(torch.float32, tensor.dtype);
        }
        using var file = SafetensorsFile.Open(CheckpointTestFiles.TinyLlama);
        Assert.Equal("pt", file.Metadata["format"]);
    }

    [Fact]
    public void FixtureValuesMatchTheIndependentParser()
    {
        using var scope = torch.NewDisposeScope();
        var independent = TinySafetensorsParser.Parse(File.ReadAllBytes(CheckpointTestFiles.TinyLlama));
        using var reader = CheckpointReader.Open(CheckpointTestFiles.TinyLlama);
        foreach (string name in reader.TensorNames)
        {
            Assert.Equal(independent.DataOf(name), reader.ReadTensor(name).bytes.ToArray());
        }
        // The README's recipe makes norm weights 1 + N(0, 0.1²): plausibly close to 1, but not all exactly 1.
        var norm = reader.ReadTensor("model.norm.weight");
        Assert.InRange(norm.mean().item<float>(), 0.9f, 1.1f);
        Assert.NotEqual(64f, norm.eq(1f).sum().item<long>());
    }

    [Fact]
    public void Stories260KReadsAllTensors()
    {
        using var scope = torch.NewDisposeScope();
        using var reader = CheckpointReader.Open(Path.GetDirectoryName(CheckpointTestFiles.Stories260K)!);
        // Embedding, 5 layers × 9 weights, final norm; the LM head is tied to the embedding and not stored.
        Assert.Equal(47, reader.TensorNames.Count);
        Assert.False(reader.Contains("lm_head.weight"));
        Assert.Equal(new long[] { 512, 64 }, reader.Describe("model.embed_tokens.weight").Shape);
        Assert.Equal(new long[] { 32, 64 }, reader.Describe("model.layers.4.self_attn.k_proj.weight").Shape);
        Assert.Equal(new long[] { 172, 64 }, reader.Describe("model.layers.2.mlp.gate_proj.weight").Shape);
        Assert.Equal(new long[] { 64, 172 }, reader.Describe("model.layers.2.mlp.down_proj.weight").Shape);
        var independent = TinySafetensorsParser.Parse(File.ReadAllBytes(CheckpointTestFiles.Stories260K));
        foreach (string name in reader.TensorNames)
        {
            var tensor = reader.ReadTensor(name);
            Assert.Equal(independent.Tensors[name].Shape, tensor.shape);
            Assert.Equal(independent.DataOf(name), tensor.bytes.ToArray());
            Assert.False(tensor.isnan().any().item<bool>());
        }
        // This file stores __metadata__ last; the reader must not care.
        using var file = SafetensorsFile.Open(CheckpointTestFiles.Stories260K);
        Assert.Equal("pt", file.Metadata["format"]);
    }

    [Fact]
    public void MissingTensorNamesTheCheckpoint()
    {
        using var reader = CheckpointReader.Open(CheckpointTestFiles.TinyLlama);
        var error = Assert.Throws<KeyNotFoundException>(() => reader.Describe("model.layers.9.mlp.up_proj.weight"));
        Assert.Contains("model.layers.9.mlp.up_proj.weight", error.Message);
        Assert.Contains(CheckpointTestFiles.TinyLlama, error.Message);
    }

    [Fact]
    public void FolderWithoutWeightsSaysWhatItFound()
    {
        using var folder = new ScratchFolder();
        Assert.Contains("neither model.safetensors nor model.safetensors.index.json", Assert.Throws<FileNotFoundException>(() => CheckpointReader.Open(folder.Path)).Message);
        File.WriteAllBytes(folder.File("pytorch_model.bin"), [1]);
        Assert.Contains("PyTorch pickle weights", Assert.Throws<FileNotFoundException>(() => CheckpointReader.Open(folder.Path)).Message);
        Assert.Throws<FileNotFoundException>(() => CheckpointReader.Open(folder.File("nope")));
    }

    [Fact]
    public void ModelSafetensorsWinsOverAnIndexAsInTransformers()
    {
        using var scope = torch.NewDisposeScope();
        using var folder = new ScratchFolder();
        SafetensorsWriter.Write(folder.File("model.safetensors"), [new("single", torch.ones(1))]);
        File.WriteAllText(folder.File("model.safetensors.index.json"), "not json");
        using var reader = CheckpointReader.Open(folder.Path);
        Assert.Equal(["single"], reader.TensorNames);
    }

    private static (ScratchFolder Folder, string Index) ShardedCheckpoint()
    {
        var folder = new ScratchFolder();
        using var scope = torch.NewDisposeScope();
        SafetensorsWriter.WriteSharded(folder.Path, new Dictionary<string, torch.Tensor> { ["a"] = torch.ones(10), ["b"] = torch.ones(10) }, maxShardBytes: 40);
        return (folder, folder.File("model.safetensors.index.json"));
    }

    private static void AssertIndexRejected(string index, string problem)
    {
        var error = Assert.Throws<CheckpointFormatException>(() => CheckpointReader.Open(index));
        Assert.Equal(index, error.FilePath);
        Assert.Contains(index, error.Message);
        Assert.Contains(problem, error.Message);
        Assert.Contains("download or export the whole folder again", error.Message);
    }

    [Fact]
    public void IndexWithBadJson()
    {
        var (folder, index) = ShardedCheckpoint();
        using (folder)
        {
            File.WriteAllText(index, "{\"weight_map\": {");
            AssertIndexRejected(index, "the index is not valid JSON");
            File.WriteAllText(index, "{\"metadata\": {}}");
            AssertIndexRejected(index, "the index has no \"weight_map\" object");
            File.WriteAllText(index, "{\"weight_map\": {\"a\": 3}}");
            AssertIndexRejected(index, "the weight_map entry for tensor 'a' is a Number");
            File.WriteAllText(index, "{\"weight_map\": {\"a\": \"model-00001-of-00002.safetensors\", \"a\": \"model-00001-of-00002.safetensors\"}}");
            AssertIndexRejected(index, "the weight_map lists tensor 'a' twice");
            File.WriteAllText(index, "{\"weight_map\": {\"a\": \"../model-00001-of-00002.safetensors\"}}");
            AssertIndexRejected(index, "which is not a file inside the checkpoint folder");
        }
    }

    [Fact]
    public void IndexNamingAMissingShard()
    {
        var (folder, index) = ShardedCheckpoint();
        using (folder)
        {
            File.Delete(folder.File("model-00002-of-00002.safetensors"));
            AssertIndexRejected(index, "it maps tensor 'b' to the shard 'model-00002-of-00002.safetensors', which does not exist in");
            var error = Assert.Throws<CheckpointFormatException>(() => CheckpointReader.Open(folder.Path));
            Assert.Equal(index, error.FilePath);
        }
    }

    [Fact]
    public void IndexListingATensorItsShardLacks()
    {
        var (folder, index) = ShardedCheckpoint();
        using (folder)
        {
            File.WriteAllText(index, """{"metadata": {"total_size": 80}, "weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00001-of-00002.safetensors"}}""");
            AssertIndexRejected(index, "it maps tensor 'b' to the shard 'model-00001-of-00002.safetensors', but that shard has no such tensor");
        }
    }

    [Fact]
    public void ABadShardReportsTheShardFile()
    {
        var (folder, index) = ShardedCheckpoint();
        using (folder)
        {
            string shard = folder.File("model-00002-of-00002.safetensors");
            File.WriteAllBytes(shard, [1, 2, 3]);
            var error = Assert.Throws<CheckpointFormatException>(() => CheckpointReader.Open(index));
            Assert.Equal(shard, error.FilePath);
        }
    }

    [Fact]
    public void IndexOpenedDirectlyReadsEveryShard()
    {
        var (folder, index) = ShardedCheckpoint();
        using (folder)
        {
            using var scope = torch.NewDisposeScope();
            using var reader = CheckpointReader.Open(index);
            Assert.Equal(index, reader.Path);
            Assert.Equal([folder.File("model-00001-of-00002.safetensors"), folder.File("model-00002-of-00002.safetensors")], reader.Files);
            Assert.Equal(["a", "b"], reader.TensorNames);
            Assert.Equal(10f, reader.ReadTensor("b").sum().item<float>());
            using var doc = JsonDocument.Parse(File.ReadAllText(index));
            Assert.Equal(80, doc.RootElement.GetProperty("metadata").GetProperty("total_size").GetInt64());
        }
    }
}
