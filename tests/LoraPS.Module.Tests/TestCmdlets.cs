using System.Management.Automation;
using System.Management.Automation.Runspaces;
using LoraPS.Module.Infrastructure;

namespace LoraPS.Module.Tests;

// Cmdlets that exist only to drive LoraCmdlet's infrastructure from a real runspace.

[Cmdlet(VerbsDiagnostic.Test, "LoraEngineError")]
public sealed class TestEngineErrorCommand : LoraCmdlet
{
    [Parameter(Mandatory = true, Position = 0)]
    public string Kind { get; set; } = "";

    protected override void ProcessRecord() => RunEngine<int>(_ => throw Kind switch
    {
        "FileNotFound" => new FileNotFoundException("Cannot find model.safetensors in /models/x. Check the folder."),
        "InvalidData" => new InvalidDataException("config.json: hidden_size is missing."),
        "Argument" => new ArgumentOutOfRangeException("rank", "Rank must be positive."),
        "Canceled" => new OperationCanceledException("Timed out."),
        "NotSupported" => new NotSupportedException("Architecture 'mamba' is not supported."),
        "Invalid" => new InvalidOperationException("The model was released."),
        "Wrapped" => new AggregateException(new InvalidDataException("inner data problem")),
        _ => new ApplicationException("something odd"),
    }, target: Kind);
}

[Cmdlet(VerbsDiagnostic.Test, "LoraPath", DefaultParameterSetName = "Path")]
public sealed class TestPathCommand : LoraCmdlet
{
    [Parameter(Mandatory = true, Position = 0, ParameterSetName = "Path")]
    public string Path { get; set; } = "";

    [Parameter(Mandatory = true, ParameterSetName = "LiteralPath")]
    [Alias("PSPath")]
    public string LiteralPath { get; set; } = "";

    [Parameter] public SwitchParameter Single { get; set; }
    [Parameter] public SwitchParameter Unresolved { get; set; }

    protected override void ProcessRecord()
    {
        bool literal = ParameterSetName == "LiteralPath";
        string path = literal ? LiteralPath : Path;
        if (Unresolved) WriteObject(GetUnresolvedFileSystemPath(path));
        else if (Single) WriteObject(ResolveSingleExistingFileSystemPath(path, literal));
        else WriteObject(ResolveExistingFileSystemPaths(path, literal), enumerateCollection: true);
    }
}

[Cmdlet(VerbsDiagnostic.Test, "LoraProgress")]
public sealed class TestProgressCommand : LoraCmdlet
{
    [Parameter] public int Count { get; set; } = 100;
    [Parameter] public int IntervalMs { get; set; }
    [Parameter] public SwitchParameter FromOtherThread { get; set; }

    protected override void ProcessRecord()
    {
        using var progress = CreateProgress<int>("Counting", i => new ProgressUpdate($"item {i}", i * 100 / Count),
                                                 minInterval: TimeSpan.FromMilliseconds(IntervalMs));
        if (FromOtherThread) RunEngine(_ => Task.Run(() => progress.Report(1)).GetAwaiter().GetResult());
        for (int i = 1; i <= Count; i++) progress.Report(i);
        progress.Complete();
        WriteObject(progress.RecordsWritten);
    }
}

[Cmdlet(VerbsDiagnostic.Test, "LoraCancellation")]
public sealed class TestCancellationCommand : LoraCmdlet
{
    public static readonly ManualResetEventSlim Started = new();
    public static volatile bool SawCancellation;

    protected override void ProcessRecord() => RunEngine(token =>
    {
        Started.Set();
        token.WaitHandle.WaitOne(TimeSpan.FromSeconds(30));
        SawCancellation = token.IsCancellationRequested;
        token.ThrowIfCancellationRequested();
    });
}

[Cmdlet(VerbsDiagnostic.Test, "LoraItems")]
public sealed class TestItemsCommand : LoraCmdlet
{
    [Parameter(ValueFromPipeline = true)] public int Item { get; set; }

    protected override void ProcessRecord()
    {
        if (Item < 0) WriteError(new ArgumentOutOfRangeException(nameof(Item), $"Item {Item} is negative; items must be 0 or more."), Item);
        else WriteObject(Item);
    }
}

/// <summary>A fully documented cmdlet for the help generator's tests.</summary>
/// <remarks>It exists to check that every kind of documentation reaches the MAML.</remarks>
/// <example>Run it
/// <code>
///     Test-LoraDocumented -Name a
///     Test-LoraDocumented -Name b
/// </code>
/// <para>Runs it twice.</para>
/// </example>
/// <seealso href="https://example.org/lora">LoRA paper</seealso>
[Cmdlet(VerbsDiagnostic.Test, "LoraDocumented", SupportsShouldProcess = true)]
[OutputType(typeof(LoraPS.Runtime.RuntimeInfo))]
public sealed class TestDocumentedCommand : LoraCmdlet
{
    /// <summary>The name, as in <see cref="TestItemsCommand"/>.</summary>
    /// <value>Default: "x".</value>
    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true)]
    [Alias("N")]
    public string Name { get; set; } = "x";

    /// <summary>A closed set of choices.</summary>
    [Parameter] public DayOfWeek Day { get; set; }

    /// <summary>Paths with wildcards.</summary>
    [Parameter, SupportsWildcards] public string[] Path { get; set; } = Array.Empty<string>();

    /// <summary>A switch.</summary>
    [Parameter] public SwitchParameter Force { get; set; }
}

/// <summary>Builds runspaces holding the test cmdlets above (and the LoraPS module).</summary>
public static class TestRunspaces
{
    public static readonly Type[] Cmdlets =
    {
        typeof(TestEngineErrorCommand), typeof(TestPathCommand), typeof(TestProgressCommand),
        typeof(TestCancellationCommand), typeof(TestItemsCommand), typeof(TestDocumentedCommand),
    };

    public static Runspace Create()
    {
        var iss = InitialSessionState.CreateDefault2();
        foreach (var type in Cmdlets)
        {
            var attribute = (CmdletAttribute)type.GetCustomAttributes(typeof(CmdletAttribute), false)[0];
            iss.Commands.Add(new SessionStateCmdletEntry($"{attribute.VerbName}-{attribute.NounName}", type, null));
        }
        var runspace = RunspaceFactory.CreateRunspace(iss);
        runspace.Open();
        return runspace;
    }
}
