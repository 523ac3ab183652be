using System.Text.Json.Nodes;

namespace LoraPS.NotebookRunner.Documents;

/// <summary>One cell of a <see cref="NotebookDocument"/>, a view over its JSON object.</summary>
public sealed class NotebookCell
{
    readonly JsonObject _json;

    internal NotebookCell(JsonObject json, int number)
    {
        _json = json;
        Number = number;
    }

    /// <summary>1-based position in the notebook, as error messages name it.</summary>
    public int Number { get; }

    /// <summary>"code", "markdown" or "raw".</summary>
    public string CellType => _json["cell_type"]?.GetValue<string>() ?? "code";

    public bool IsCode => CellType == "code";

    /// <summary>The source text (nbformat stores it as a string or as a list of lines).</summary>
    public string Source => _json["source"] switch
    {
        JsonArray lines => string.Concat(lines.Select(l => l?.GetValue<string>())),
        JsonValue text => text.GetValue<string>(),
        _ => "",
    };

    /// <summary>The kernel named in the cell's metadata (polyglot_notebook.kernelName, else the legacy dotnet_interactive.language).</summary>
    public string? MetadataKernel =>
        CellKernel.Normalize(_json["metadata"]?["polyglot_notebook"]?["kernelName"]?.GetValue<string>()
                             ?? _json["metadata"]?["dotnet_interactive"]?["language"]?.GetValue<string>());

    /// <summary>Replaces the cell's outputs and execution count with those of a run (null count: the cell was empty and not run).</summary>
    public void SetResult(int? executionCount, IEnumerable<JsonObject> outputs)
    {
        _json["execution_count"] = executionCount;
        _json["outputs"] = new JsonArray(outputs.Select(o => (JsonNode)o).ToArray());
    }

    /// <summary>The outputs currently stored in the cell.</summary>
    public JsonArray Outputs => _json["outputs"] as JsonArray ?? [];

    public int? ExecutionCount => _json["execution_count"]?.GetValue<int?>();
}
