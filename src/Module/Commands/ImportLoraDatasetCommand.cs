using System.Management.Automation;
using LoraPS.Data;
using LoraPS.Module.Infrastructure;

namespace LoraPS.Module.Commands;

/// <summary>Reads a training dataset from a JSON, JSONL, CSV or TSV file, or from pipeline objects.</summary>
/// <remarks>
/// <para>
/// Import-LoraDataset reads instruction data (instruction, optional input, output — Alpaca's layout), plain text (text)
/// or classification data (sentence or text, and label; GLUE sentence pairs too) and returns a Dataset object for
/// Start-LoraFinetune. The format and the properties are found from the first record's property names; name them
/// with -Format and the -*Property parameters when the defaults do not fit.
/// </para>
/// <para>
/// Objects from the pipeline (Import-Csv rows, [pscustomobject] or hashtables) are collected and read as one dataset.
/// A record that lacks a needed property, or a malformed file, stops the cmdlet with an InvalidData error whose
/// message names the file and the record (and line) number.
/// </para>
/// </remarks>
/// <example>Read the Alpaca subset shipped with LoraPS
/// <code>$data = Import-LoraDataset ./data/alpaca/alpaca_5000_subset.json</code>
/// <para>Detects instruction data (instruction, input, output) and shows its source, format and count: 5000.</para>
/// </example>
/// <example>Read rows of a CSV file with other column names
/// <code>Import-Csv ./qa.csv | Import-LoraDataset -PromptProperty Question -ResponseProperty Answer</code>
/// <para>Every row becomes one instruction example; a row without an Answer is an error naming its record number.</para>
/// </example>
[Cmdlet(VerbsData.Import, "LoraDataset", DefaultParameterSetName = PathSet)]
[OutputType(typeof(Dataset))]
public sealed class ImportLoraDatasetCommand : DatasetCmdlet
{
    const string PathSet = "Path", LiteralPathSet = "LiteralPath", InputObjectSet = "InputObject";

    readonly List<IReadOnlyDictionary<string, object?>> _records = [];

    /// <summary>The dataset file (.json, .jsonl, .csv, .tsv, optionally .gz); wildcards must match one file.</summary>
    [Parameter(Mandatory = true, Position = 0, ParameterSetName = PathSet)]
    [SupportsWildcards]
    [ValidateNotNullOrEmpty]
    public string Path { get; set; } = null!;

    /// <summary>The dataset file, taken exactly as written (no wildcards).</summary>
    [Parameter(Mandatory = true, ParameterSetName = LiteralPathSet, ValueFromPipelineByPropertyName = true)]
    [Alias("PSPath", "LP")]
    [ValidateNotNullOrEmpty]
    public string LiteralPath { get; set; } = null!;

    /// <summary>One record: an object whose properties (or a hashtable whose keys) hold the example's fields.</summary>
    [Parameter(Mandatory = true, ParameterSetName = InputObjectSet, ValueFromPipeline = true)]
    [ValidateNotNull]
    public PSObject InputObject { get; set; } = null!;

    protected override void ProcessRecord()
    {
        if (ParameterSetName == InputObjectSet)
        {
            _records.Add(PipelineRecords.ToDictionary(InputObject));
            return;
        }
        string file = ResolveSingleExistingFileSystemPath(ParameterSetName == LiteralPathSet ? LiteralPath : Path, ParameterSetName == LiteralPathSet);
        var dataset = RunEngine(token => DatasetReader.ReadFile(file, ReadOptions(), token), file);
        WriteVerbose($"Read {dataset}");
        WriteObject(dataset);
    }

    protected override void EndProcessing()
    {
        if (ParameterSetName != InputObjectSet) return;
        if (_records.Count == 0)
            ThrowTerminating(ErrorIds.InvalidData, ErrorCategory.InvalidData, "No records came from the pipeline; pipe objects with the example's properties.");
        var dataset = RunEngine(token => DatasetReader.FromDictionaries(_records, ReadOptions(), cancellationToken: token));
        WriteVerbose($"Read {dataset}");
        WriteObject(dataset);
    }
}
